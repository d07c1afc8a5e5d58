/* ckpt_handoff.c - a migrated process's home half: the process becomes its deputy.
 *
 * After its image has been restored on another node, the original process,
 * still stopped under ptrace, executes the deputy (mosix-deputy) in place:
 * same pid, parent, descriptors, current directory, terminal and session, and
 * the same initial environment (so the node agent still knows it as a MOSIX
 * process).  execve would close the close-on-exec descriptors, which are the
 * program's: their flag is cleared first and the deputy is told which they
 * were (-x LIST), so the flag comes back when the process comes home.  Its
 * memory goes with the old program. */
#include "ckpt_capture_common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ENVIRON_MAX (256 * 1024)
#define RED_ZONE 128
#define LIST_MAX (CK_MAX_FDS * 8)

/* The descriptors with FD_CLOEXEC, as "3,7,12" (empty: none), into list. */
static int cloexec_fds(int procfd, int *fds, int *n, char *list, size_t cap)
{
    int dfd = openat(procfd, "fdinfo", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        ck_set_why_errno("/proc/PID/fdinfo");
        return -1;
    }
    int all[CK_MAX_FDS];
    int count = ck_list_fds(procfd, all);
    *n = 0;
    list[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        char name[16], info[4096], flags[64];
        snprintf(name, sizeof(name), "%d", all[i]);
        if (ck_read_small(dfd, name, info, sizeof(info)) < 0)
            continue; /* closed meanwhile: it cannot be: the process is stopped */
        uint64_t f;
        if (ck_status_value(info, "flags", flags, sizeof(flags)) < 0 ||
            ck_parse_u64(flags, 8, &f) < 0 || !(f & O_CLOEXEC))
            continue;
        fds[(*n)++] = all[i];
        int w = snprintf(list + used, cap - used, "%s%d", used ? "," : "", all[i]);
        if (w < 0 || (size_t)w >= cap - used) {
            ck_set_why("too many close-on-exec descriptors");
            (void)close(dfd);
            return -1;
        }
        used += (size_t)w;
    }
    if (close(dfd) < 0) {
        ck_set_why_errno("close");
        return -1;
    }
    return 0;
}

static int set_cloexec(struct ck_tracee *t, const int *fds, int n, int on)
{
    for (int i = 0; i < n; i++) {
        uint64_t args[6] = {(uint64_t)fds[i], F_SETFD, on ? FD_CLOEXEC : 0, 0, 0, 0};
        int64_t ret;
        if (ck_inject(t, SYS_fcntl, args, &ret) < 0)
            return -1;
        if (ret < 0) {
            errno = (int)-ret;
            ck_set_why_errno("fcntl(%d, F_SETFD) in process %d", fds[i], t->pid);
            return -1;
        }
    }
    return 0;
}

/* rt_sigprocmask(how, set, old) in the tracee (set, old: its addresses). */
static int set_mask(struct ck_tracee *t, int how, uint64_t set, uint64_t old)
{
    uint64_t args[6] = {(uint64_t)how, set, old, sizeof(uint64_t), 0, 0};
    int64_t ret;
    if (ck_inject(t, SYS_rt_sigprocmask, args, &ret) < 0)
        return -1;
    if (ret < 0) {
        errno = (int)-ret;
        ck_set_why_errno("rt_sigprocmask in process %d", t->pid);
        return -1;
    }
    return 0;
}

/* argv and envp (each NUL-separated, counted) laid out below the tracee's
 * stack pointer: strings, then the two NULL-terminated pointer arrays. */
struct layout {
    char *buf;
    size_t len;
    uint64_t base, argv_at, envp_at;
};

static size_t count_strings(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\0';
    return n;
}

static int lay_out(struct layout *l, uint64_t sp, char *const argv[], int argc, const char *env,
                   size_t envlen)
{
    size_t strs = envlen;
    for (int i = 0; i < argc; i++)
        strs += strlen(argv[i]) + 1;
    size_t nenv = count_strings(env, envlen);
    size_t ptrs = ((size_t)argc + 1 + nenv + 1) * sizeof(uint64_t);
    size_t strs_padded = (strs + 15) & ~(size_t)15;
    l->len = strs_padded + ptrs;
    l->base = (sp - RED_ZONE - l->len) & ~(uint64_t)15;
    l->buf = ck_alloc(l->len);
    memset(l->buf, 0, l->len);
    uint64_t *vec = (uint64_t *)(void *)(l->buf + strs_padded);
    size_t at = 0, v = 0;
    l->argv_at = l->base + strs_padded;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]) + 1;
        memcpy(l->buf + at, argv[i], n);
        vec[v++] = l->base + at;
        at += n;
    }
    vec[v++] = 0;
    l->envp_at = l->base + strs_padded + v * sizeof(uint64_t);
    memcpy(l->buf + at, env, envlen);
    for (size_t i = 0; i < envlen;) {
        vec[v++] = l->base + at + i;
        i += strlen(env + i) + 1;
    }
    vec[v++] = 0;
    return 0;
}

int ck_handoff_deputy(struct ck_tracee *t, int procfd, int memfd, char *const dargv[], int dargc)
{
    int fds[CK_MAX_FDS], nfds = 0;
    char list[LIST_MAX];
    if (cloexec_fds(procfd, fds, &nfds, list, sizeof(list)) < 0)
        return -1;
    size_t envlen = 0;
    char *env = read_whole_file(procfd, "environ", &envlen);
    if (!env) {
        ck_set_why_errno("/proc/%d/environ", t->pid);
        return -1;
    }
    if (envlen > ENVIRON_MAX) {
        ck_set_why("process %d: environment too large to hand over", t->pid);
        free(env);
        return -1;
    }
    while (envlen && env[envlen - 1] != '\0')
        envlen--; /* a partial last string (cut at the limit) */
    char *argv[64];
    int argc = 0;
    for (int i = 0; i < dargc && argc < 60; i++)
        argv[argc++] = dargv[i];
    if (nfds) {
        argv[argc++] = "-x";
        argv[argc++] = list;
    }
    struct layout l;
    lay_out(&l, t->saved.rsp, argv, argc, env, envlen);
    free(env);
    int rc = ck_mem_write(memfd, l.base, l.buf, l.len);
    free(l.buf);
    if (rc < 0) {
        ck_set_why_errno("writing the deputy's arguments into process %d", t->pid);
        return -1;
    }
    if (set_cloexec(t, fds, nfds, 0) < 0)
        return -1;
    /* Every signal blocked across the execve (the mask survives it): a signal
     * the program's handler would have taken (its interval timer's, or one
     * held back while it was traced) would find the deputy's default action,
     * death, before the deputy catches signals and unblocks them. */
    uint64_t masks[2] = {~0ull, 0}, masks_at = l.base - sizeof(masks);
    if (ck_mem_write(memfd, masks_at, masks, sizeof(masks)) < 0) {
        ck_set_why_errno("writing a signal mask into process %d", t->pid);
        return -1;
    }
    if (set_mask(t, SIG_BLOCK, masks_at, masks_at + sizeof(uint64_t)) < 0)
        return -1;
    int64_t ret = 0;
    if (ck_inject_exec(t, l.base, l.argv_at, l.envp_at, &ret) < 0)
        return -1;
    if (ret < 0) {
        errno = (int)-ret;
        ck_set_why_errno("execve %s in process %d", dargv[0], t->pid);
        /* back as it was: the process resumes */
        (void)set_mask(t, SIG_SETMASK, masks_at + sizeof(uint64_t), 0);
        (void)set_cloexec(t, fds, nfds, 1);
        return -1;
    }
    return 0;
}
