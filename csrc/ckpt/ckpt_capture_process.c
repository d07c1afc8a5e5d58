/* ckpt_capture_process.c - the PROCESS record, signal actions, the OPTIONS text.
 *
 * Kernel facts this relies on:
 * - Interval timers are not inherited by fork: they are read from the process
 *   itself, while it is stopped (getitimer injected).
 * - fork copies signal actions, the alternate signal stack, the blocked mask,
 *   the FPU/XSAVE state, rseq registration, brk and the auxv: those are read
 *   from the copy, at leisure.  The robust list is not copied (the child
 *   starts without one): it is read from the process (get_robust_list).
 * - The blocked mask is read from the process too (see ck_freeze_state).
 * - Injected calls need memory for their results: the ABI leaves everything
 *   below the red zone (128 bytes under rsp) free, so (rsp - 128 - 512) & ~63
 *   is used, and its old bytes are put back afterwards anyway. */
#include "ckpt_capture_common.h"
#include "mosix_shim.h"
#include "seccomp_table.h"

#include <cpuid.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SCRATCH_BYTES 128
#define RED_ZONE 128
#define SHIM_NAME "/libmosix_shim.so"

/* ------------------------------------------------------------ refusals */

static char *read_status(int procfd, char *buf, size_t cap)
{
    if (ck_read_small(procfd, "status", buf, cap) < 0)
        ck_fail_errno("/proc/PID/status");
    return buf;
}

void ck_precheck_process(int procfd)
{
    char status[8192], value[256];
    read_status(procfd, status, sizeof(status));
    const char *keys[] = {"Uid", "Gid"};
    for (int k = 0; k < 2; k++) {
        unsigned long r, e, s;
        if (ck_status_value(status, keys[k], value, sizeof(value)) < 0 ||
            sscanf(value, "%lu %lu %lu", &r, &e, &s) != 3)
            ck_fail("/proc/PID/status: no %s", keys[k]);
        if (r != e || r != s)
            ck_refuse("it runs with set-user-ID or set-group-ID privileges");
    }
}

int ck_count_threads(int procfd)
{
    int fd = openat(procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    if (closedir(d) < 0)
        return -1;
    return n;
}

/* ------------------------------------------------------------ scratch memory */

struct scratch {
    uint64_t addr;
    unsigned char old[SCRATCH_BYTES];
};

/* The first writable private area of the tracee: scratch when the stack has
 * no room below the red zone (rsp at the bottom of the stack's mapping). */
static uint64_t writable_area(int procfd)
{
    size_t len;
    char *maps = read_whole_file(procfd, "maps", &len);
    if (!maps)
        ck_fail_errno("/proc/PID/maps");
    uint64_t at = 0;
    for (char *line = maps; line && *line && !at;) {
        unsigned long long s, e;
        char perms[8];
        if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) == 3 && strcmp(perms, "rw-p") == 0 &&
            e - s >= SCRATCH_BYTES)
            at = s;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    free(maps);
    return at;
}

static void scratch_take(struct scratch *s, const struct ck_tracee *t, int procfd, int memfd)
{
    s->addr = (t->saved.rsp - RED_ZONE - 512) & ~63ull;
    if (ck_mem_read(memfd, s->addr, s->old, sizeof(s->old)) == 0)
        return;
    s->addr = writable_area(procfd);
    if (!s->addr || ck_mem_read(memfd, s->addr, s->old, sizeof(s->old)) < 0)
        ck_fail("process %d: no memory for the results of injected calls", t->pid);
}

static void scratch_give_back(const struct scratch *s, int memfd)
{
    if (ck_mem_write(memfd, s->addr, s->old, sizeof(s->old)) < 0)
        ck_fail_errno("writing back the process's memory at %llx", (unsigned long long)s->addr);
}

static int64_t call(struct ck_tracee *t, long nr, uint64_t a0, uint64_t a1, uint64_t a2,
                    uint64_t a3)
{
    uint64_t args[6] = {a0, a1, a2, a3, 0, 0};
    int64_t ret;
    if (ck_inject(t, nr, args, &ret) < 0)
        ck_fail("%s", ck_why);
    return ret;
}

static void fetch(int memfd, uint64_t addr, void *buf, size_t len)
{
    if (ck_mem_read(memfd, addr, buf, len) < 0)
        ck_fail_errno("reading the process's memory at %llx", (unsigned long long)addr);
}

/* ------------------------------------------------------------ the pause */

static void read_itimers(struct ck_tracee *t, int procfd, int memfd, int64_t out[12])
{
    struct scratch s;
    scratch_take(&s, t, procfd, memfd);
    for (int which = 0; which < 3; which++) {
        uint64_t at = s.addr + 32 * (uint64_t)which;
        int64_t ret = call(t, SYS_getitimer, (uint64_t)which, at, 0, 0);
        if (ret < 0) {
            errno = (int)-ret;
            ck_fail_errno("getitimer in process %d", t->pid);
        }
        /* struct itimerval: interval {s, us}, value {s, us}: the record's order */
        fetch(memfd, at, out + 4 * which, 32);
    }
    scratch_give_back(&s, memfd);
}

int ck_read_clear_tid(struct ck_tracee *t, int procfd, int memfd, uint64_t *addr)
{
    struct scratch s;
    scratch_take(&s, t, procfd, memfd);
    int64_t ret = call(t, SYS_prctl, PR_GET_TID_ADDRESS, s.addr, 0, 0);
    if (ret == 0)
        fetch(memfd, s.addr, addr, sizeof(*addr));
    scratch_give_back(&s, memfd);
    if (ret == -EINVAL)
        return 0; /* a kernel without CONFIG_CHECKPOINT_RESTORE */
    if (ret < 0) {
        errno = (int)-ret;
        ck_fail_errno("PR_GET_TID_ADDRESS in thread %d", t->pid);
    }
    return 1;
}

int64_t ck_read_timer(struct ck_tracee *t, int procfd, int memfd, int32_t id, int64_t out[4])
{
    struct scratch s;
    scratch_take(&s, t, procfd, memfd);
    int64_t ret = call(t, SYS_timer_gettime, (uint64_t)(int64_t)id, s.addr, 0, 0);
    if (ret == 0) /* struct itimerspec: interval {s, ns}, value {s, ns} */
        fetch(memfd, s.addr, out, 32);
    scratch_give_back(&s, memfd);
    return ret;
}

void ck_freeze_state(struct ck_tracee *t, int procfd, int memfd, struct ck_frozen *fz)
{
    memset(fz, 0, sizeof(*fz));
    fz->regs = t->saved;
    void *head = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, t->pid, &head, &len) < 0)
        ck_fail_errno("get_robust_list");
    fz->robust_list = (uint64_t)(uintptr_t)head;
    fz->robust_len = len;
    ck_snap_fds(procfd, &fz->fds);
    read_itimers(t, procfd, memfd, fz->itimers);
    /* In sigsuspend (ppoll, pselect...) the call's temporary mask is in force:
     * PTRACE_GETSIGMASK gives the program's own, the one the kernel puts back
     * (saved_sigmask); the image issues the call again, which sets the
     * temporary again. */
    if (ptrace(PTRACE_GETSIGMASK, t->pid, (void *)sizeof(fz->sigmask), &fz->sigmask) < 0)
        ck_fail_errno("PTRACE_GETSIGMASK");
}

/* The stopped thread's alternate signal stack (sigaltstack injected). */
void ck_read_altstack(struct ck_tracee *t, int procfd, int memfd, uint64_t *sp, uint64_t *size,
                      int32_t *flags)
{
    struct scratch s;
    scratch_take(&s, t, procfd, memfd);
    int64_t ret = call(t, SYS_sigaltstack, 0, s.addr, 0, 0);
    if (ret < 0) {
        errno = (int)-ret;
        ck_fail_errno("sigaltstack in thread %d", t->pid);
    }
    struct ck_kstack ss;
    fetch(memfd, s.addr, &ss, sizeof(ss));
    scratch_give_back(&s, memfd);
    *sp = ss.sp;
    *flags = ss.flags;
    *size = ss.size;
}

/* ------------------------------------------------------------ the copy */

static uint32_t xsave_size(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d) || b == 0)
        ck_fail("this CPU does not describe its XSAVE area (CPUID 0xD)");
    return b; /* bytes for the features enabled in XCR0, standard layout */
}

uint32_t ck_read_xstate(pid_t tid, unsigned char *xstate)
{
    uint32_t size = xsave_size();
    if (size > MOSIX_CKPT_MAX_XSAVE)
        ck_fail("the XSAVE area is %u bytes (at most %d can be saved)", size, MOSIX_CKPT_MAX_XSAVE);
    struct iovec iov = {.iov_base = xstate, .iov_len = size};
    if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) < 0)
        ck_fail_errno("PTRACE_GETREGSET NT_X86_XSTATE");
    return (uint32_t)iov.iov_len;
}

void ck_read_rseq(pid_t tid, uint64_t *addr, uint32_t *len, uint32_t *flags, uint32_t *sig)
{
    struct __ptrace_rseq_configuration conf;
    memset(&conf, 0, sizeof(conf));
    if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, (void *)sizeof(conf), &conf) < 0) {
        if (errno != EIO && errno != EINVAL)
            ck_fail_errno("PTRACE_GET_RSEQ_CONFIGURATION");
        memset(&conf, 0, sizeof(conf)); /* before Linux 5.13: recorded as not registered */
    }
    *addr = conf.rseq_abi_pointer;
    *len = conf.rseq_abi_size;
    *flags = conf.flags;
    *sig = conf.signature;
}

void ck_query_copy(struct ck_tracee *copy, int copyfd, int memfd, struct ck_copy_state *cs)
{
    struct scratch s;
    memset(cs, 0, sizeof(*cs));
    scratch_take(&s, copy, copyfd, memfd);
    for (int sig = 1; sig <= CK_NSIG; sig++) {
        /* the kernel's struct sigaction: handler, flags, restorer, mask (8 bytes) */
        if (call(copy, SYS_rt_sigaction, (uint64_t)sig, 0, s.addr, 8) == 0)
            fetch(memfd, s.addr, &cs->act[sig - 1], sizeof(cs->act[0]));
    }
    if (call(copy, SYS_sigaltstack, 0, s.addr, 0, 0) == 0) {
        struct ck_kstack ss;
        fetch(memfd, s.addr, &ss, sizeof(ss));
        cs->altstack_sp = ss.sp;
        cs->altstack_flags = ss.flags;
        cs->altstack_size = ss.size;
    }
    cs->brk = (uint64_t)call(copy, SYS_brk, 0, 0, 0, 0);
    scratch_give_back(&s, memfd);
    cs->xsave_size = ck_read_xstate(copy->pid, cs->xstate);
    ck_read_rseq(copy->pid, &cs->rseq_addr, &cs->rseq_len, &cs->rseq_flags, &cs->rseq_sig);
}

/* ------------------------------------------------------------ PROCESS */

/* The fields of /proc/PID/stat after "(comm) ", field 3 first. */
static int stat_fields(int procfd, uint64_t *out, int max)
{
    char text[4096];
    if (ck_read_small(procfd, "stat", text, sizeof(text)) < 0)
        ck_fail_errno("/proc/PID/stat");
    char *p = strrchr(text, ')'); /* comm may contain ')' and spaces: the last one ends it */
    if (!p || p[1] != ' ')
        ck_fail("/proc/PID/stat: cannot parse");
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(p + 2, " \n", &save); tok && n < max;
         tok = strtok_r(NULL, " \n", &save))
        out[n++] = strtoull(tok, NULL, 10); /* the state letter gives 0 */
    return n;
}

#define STAT(field) ((field) - 3)

static void fill_mm(struct mosix_ckpt_process *p, int copyfd)
{
    uint64_t f[64];
    if (stat_fields(copyfd, f, 64) < STAT(52))
        ck_fail("/proc/PID/stat: too few fields");
    p->start_code = f[STAT(26)];
    p->end_code = f[STAT(27)];
    p->start_stack = f[STAT(28)];
    p->start_data = f[STAT(45)];
    p->end_data = f[STAT(46)];
    p->start_brk = f[STAT(47)];
    p->arg_start = f[STAT(48)];
    p->arg_end = f[STAT(49)];
    p->env_start = f[STAT(50)];
    p->env_end = f[STAT(51)];
}

static void fill_auxv(struct mosix_ckpt_process *p, int copyfd)
{
    uint64_t words[96 + 2];
    ssize_t n = ck_read_small(copyfd, "auxv", (char *)words, sizeof(words));
    if (n < 0)
        ck_fail_errno("/proc/PID/auxv");
    size_t w = (size_t)n / 8;
    if (w > 96)
        ck_fail("/proc/PID/auxv: more than 48 entries");
    memcpy(p->auxv, words, w * 8);
    p->auxv_words = (uint32_t)w;
}

/* A number from /proc/PID/status ("KEY: N ..."), the first of the line. */
static uint64_t status_number(const char *status, const char *key, int base)
{
    char value[256], *end;
    if (ck_status_value(status, key, value, sizeof(value)) < 0)
        ck_fail("/proc/PID/status: no %s", key);
    value[strcspn(value, " \t")] = '\0';
    errno = 0;
    uint64_t v = strtoull(value, &end, base);
    if (errno || end == value || *end)
        ck_fail("/proc/PID/status: cannot parse %s", key);
    return v;
}

static void fill_ids(struct mosix_ckpt_process *p, int procfd, int copyfd)
{
    char status[8192], value[256];
    uint64_t v;
    read_status(procfd, status, sizeof(status));
    p->ppid = (uint32_t)status_number(status, "PPid", 10);
    p->uid = (uint32_t)status_number(status, "Uid", 10); /* the real id comes first */
    p->gid = (uint32_t)status_number(status, "Gid", 10);
    read_status(copyfd, status, sizeof(status)); /* the umask at the frozen point */
    p->umask = (uint32_t)status_number(status, "Umask", 8);
    if (ck_read_small(copyfd, "personality", value, sizeof(value)) < 0)
        ck_fail_errno("/proc/PID/personality");
    value[strcspn(value, "\n")] = '\0';
    if (ck_parse_u64(value, 16, &v) < 0)
        ck_fail("/proc/PID/personality: cannot parse");
    p->personality = (uint32_t)v;
    if (ck_read_small(copyfd, "comm", value, sizeof(value)) < 0)
        ck_fail_errno("/proc/PID/comm");
    value[strcspn(value, "\n")] = '\0';
    size_t n = strlen(value);
    memcpy(p->comm, value, n < sizeof(p->comm) ? n : sizeof(p->comm)); /* NUL-padded (memset) */
    char exe[MOSIX_CKPT_MAX_PATH];
    if (ck_readlink(procfd, "exe", exe, sizeof(exe)) < 0)
        exe[0] = '\0'; /* a long path: it is only for messages */
    snprintf(p->exe, sizeof(p->exe), "%s", exe);
}

static void fill_cpu(struct mosix_ckpt_process *p)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        ck_fail("CPUID leaf 1 is missing");
    p->cpuid_1_ecx = c;
    p->cpuid_1_edx = d;
    if (!(c & bit_OSXSAVE))
        ck_fail("the operating system does not enable XSAVE");
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        p->cpuid_7_ebx = b;
        p->cpuid_7_ecx = c;
        p->cpuid_7_edx = d;
    }
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    p->xfeatures = ((uint64_t)hi << 32) | lo;
}

/* /proc/PID/limits: "NAME(25) SOFT(20) HARD(20) UNITS" per resource, in order. */
static void limits_from_proc(struct mosix_ckpt_process *p, int copyfd)
{
    char text[4096];
    if (ck_read_small(copyfd, "limits", text, sizeof(text)) < 0)
        ck_fail_errno("/proc/PID/limits");
    char *line = strchr(text, '\n'); /* after the heading */
    for (int r = 0; r < 16; r++) {
        if (!line || strlen(line + 1) < 27)
            ck_fail("/proc/PID/limits: cannot parse");
        line++;
        char soft[32], hard[32];
        if (sscanf(line + 26, "%31s %31s", soft, hard) != 2)
            ck_fail("/proc/PID/limits: cannot parse");
        const char *v[2] = {soft, hard};
        for (int k = 0; k < 2; k++) {
            uint64_t n = RLIM_INFINITY;
            if (strcmp(v[k], "unlimited") != 0 && ck_parse_u64(v[k], 10, &n) < 0)
                ck_fail("/proc/PID/limits: cannot parse '%s'", v[k]);
            p->rlimits[2 * r + k] = n;
        }
        line = strchr(line, '\n');
    }
}

void ck_fill_rlimits(struct mosix_ckpt_process *p, pid_t copy, int copyfd)
{
    for (int r = 0; r < 16; r++) {
        struct rlimit rl;
        if (prlimit(copy, (enum __rlimit_resource)r, NULL, &rl) < 0) {
            /* another user's process without CAP_SYS_RESOURCE: the text has them */
            if (errno != EPERM)
                ck_fail_errno("prlimit %d", r);
            limits_from_proc(p, copyfd);
            return;
        }
        p->rlimits[2 * r] = rl.rlim_cur;
        p->rlimits[2 * r + 1] = rl.rlim_max;
    }
}

static void fill_ranges(struct mosix_ckpt_process *p, const struct ck_maps *m)
{
    for (int i = 0; i < m->n; i++) {
        const struct ck_area *a = &m->a[i];
        uint64_t *range = NULL;
        if (a->rec.flags & MOSIX_CKPT_AREA_VDSO)
            range = p->vdso;
        else if (a->rec.flags & MOSIX_CKPT_AREA_VVAR)
            range = p->vvar;
        else if (a->rec.flags & MOSIX_CKPT_AREA_VVAR_VCLOCK)
            range = p->vvar_vclock;
        if (range) {
            range[0] = a->rec.start;
            range[1] = a->rec.end;
        }
    }
}

static int is_shim(const struct ck_area *a)
{
    size_t n = strlen(a->name), t = strlen(SHIM_NAME);
    return (a->rec.flags & MOSIX_CKPT_AREA_FILE) && n >= t &&
           strcmp(a->name + n - t, SHIM_NAME) == 0;
}

/* Where the shim's state may be: the shim's own writable data (pass 0) or,
 * in a process restored before, whose areas are all anonymous (the restorer
 * maps no file, and the kernel merges neighbours), a private writable
 * anonymous area of at most SHIM_DATA_MAX bytes (pass 1).  Without pass 1 a
 * process that came home once lost its fast path when it left again. */
#define SHIM_DATA_MAX (16u << 20) /* its data and bss (a 1 MiB frame), merged with others */

static int may_hold_shim(const struct ck_area *a, int pass)
{
    if (!(a->rec.prot & PROT_WRITE) || (a->rec.flags & MOSIX_CKPT_AREA_SHARED))
        return 0;
    if (pass == 0)
        return is_shim(a);
    return !(a->rec.flags & (MOSIX_CKPT_AREA_FILE | MOSIX_CKPT_AREA_STACK | MOSIX_CKPT_AREA_HEAP |
                             MOSIX_CKPT_AREA_VDSO | MOSIX_CKPT_AREA_VVAR |
                             MOSIX_CKPT_AREA_VVAR_VCLOCK | MOSIX_CKPT_AREA_RESTORER)) &&
           a->rec.end - a->rec.start <= SHIM_DATA_MAX;
}

/* The shim's state (mosix_shim.h), found by its magic: 1 when found. */
static int shim_state_in(struct mosix_ckpt_process *p, const struct ck_area *a, int memfd)
{
    size_t len = (size_t)(a->rec.end - a->rec.start);
    unsigned char *buf = ck_alloc(len);
    fetch(memfd, a->rec.start, buf, len);
    for (size_t off = 0; off + sizeof(struct mosix_shim_state) <= len; off += 8) {
        struct mosix_shim_state st;
        memcpy(&st, buf + off, sizeof(st));
        if (memcmp(st.magic, MOSIX_SHIM_STATE_MAGIC, sizeof(st.magic)) != 0 ||
            st.version != MOSIX_SHIM_STATE_VERSION)
            continue;
        if (st.active && st.kind == MOSIX_FILTER_SHIM_NOTIFY)
            p->shim_kind = MOSIX_CKPT_SHIM_NOTIFY;
        else if (st.active && st.kind == MOSIX_FILTER_SHIM_ENOSYS)
            p->shim_kind = MOSIX_CKPT_SHIM_ENOSYS;
        if (p->shim_kind != MOSIX_CKPT_SHIM_NONE) {
            p->shim_mode = st.mode;
            p->shim_lo = st.libc_lo;
            p->shim_hi = st.libc_hi;
        }
        free(buf);
        return 1;
    }
    free(buf);
    return 0;
}

static void fill_shim(struct mosix_ckpt_process *p, const struct ck_maps *m, int memfd)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n; i++)
            if (may_hold_shim(&m->a[i], pass) && shim_state_in(p, &m->a[i], memfd))
                return;
}

static void fill_base_mode(struct mosix_ckpt_process *p, int procfd)
{
    size_t len;
    char *env = read_whole_file(procfd, "environ", &len);
    if (!env)
        ck_fail_errno("/proc/PID/environ");
    p->base_mode = (uint32_t)mosix_mode_of(env, len, MOSIX_MODE_KILL);
    free(env);
}

/* glibc keeps the thread id in its thread control block (set_tid_address points there). */
static void fill_tid_addr(struct mosix_ckpt_process *p, uint64_t fs_base, uint32_t tcb_tid_offset)
{
    p->tcb_tid_offset = tcb_tid_offset;
    if (fs_base && tcb_tid_offset)
        p->tid_addr = fs_base + tcb_tid_offset;
}

void ck_build_process(struct mosix_ckpt_process *p, pid_t pid, pid_t copy, int procfd, int copyfd,
                      int memfd, const struct ck_frozen *fz, const struct ck_copy_state *cs,
                      const struct ck_maps *maps, const struct ck_threads *threads)
{
    memset(p, 0, sizeof(*p));
    p->pid = (uint32_t)pid;
    fill_ids(p, procfd, copyfd);
    fill_base_mode(p, procfd);
    fill_shim(p, maps, memfd);
    p->xsave_size = cs->xsave_size;
    fill_cpu(p);
    p->rseq_len = cs->rseq_len;
    p->rseq_addr = cs->rseq_addr;
    p->rseq_flags = cs->rseq_flags;
    p->rseq_sig = cs->rseq_sig;
    p->robust_list = fz->robust_list;
    p->robust_len = fz->robust_len;
    fill_tid_addr(p, fz->regs.fs_base, threads->tcb_tid_offset);
    p->threads = (uint32_t)threads->n + 1;
    fill_mm(p, copyfd);
    p->brk = cs->brk;
    fill_auxv(p, copyfd);
    ck_fill_rlimits(p, copy, copyfd);
    memcpy(p->itimers, fz->itimers, sizeof(p->itimers));
    p->altstack_sp = cs->altstack_sp;
    p->altstack_size = cs->altstack_size;
    p->altstack_flags = cs->altstack_flags;
    p->sigmask = fz->sigmask;
    fill_ranges(p, maps);
    p->vdso_hash = ck_vdso_hash(copyfd, memfd);
}

/* ------------------------------------------------------------ OPTIONS */

/* The value of NAME= in a NUL-separated environment, or NULL. */
static const char *env_value(const char *env, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    for (const char *p = env; p < env + len;) {
        size_t n = strnlen(p, (size_t)(env + len - p));
        if (n > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *vlen = n - nlen - 1;
            return p + nlen + 1;
        }
        p += n + 1;
    }
    return NULL;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            ck_fail("out of memory");
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* KEY=VALUE\n; a newline in VALUE (a program's argv0) would split the line. */
static void append_line(char **buf, size_t *len, size_t *cap, const char *key, const char *v,
                        size_t vlen)
{
    append(buf, len, cap, key, strlen(key));
    append(buf, len, cap, "=", 1);
    size_t at = *len;
    append(buf, len, cap, v, vlen);
    for (size_t i = at; i < *len; i++)
        if ((*buf)[i] == '\n' || (*buf)[i] == '\0')
            (*buf)[i] = ' ';
    append(buf, len, cap, "\n", 1);
}

static int given(char *const *extra, int nextra, const char *key)
{
    size_t k = strlen(key);
    for (int i = 0; i < nextra; i++)
        if (strncmp(extra[i], key, k) == 0 && extra[i][k] == '=')
            return 1;
    return 0;
}

char *ck_build_options(int procfd, char *const *extra, int nextra, size_t *lenp)
{
    size_t len = 0, cap = 256, elen = 0, clen = 0, vlen = 0;
    char *buf = ck_alloc(cap);
    if (!given(extra, nextra, "inherit")) {
        char *env = read_whole_file(procfd, "environ", &elen);
        if (!env)
            ck_fail_errno("/proc/PID/environ");
        const char *v = env_value(env, elen, MOSIX_INHERIT_ENV, &vlen);
        append_line(&buf, &len, &cap, "inherit", v ? v : "", v ? vlen : 0);
        free(env);
    }
    if (!given(extra, nextra, "argv0")) {
        char *cmd = read_whole_file(procfd, "cmdline", &clen);
        if (!cmd)
            ck_fail_errno("/proc/PID/cmdline");
        append_line(&buf, &len, &cap, "argv0", cmd, strnlen(cmd, clen));
        free(cmd);
    }
    for (int i = 0; i < nextra; i++) {
        append(&buf, &len, &cap, extra[i], strlen(extra[i]));
        append(&buf, &len, &cap, "\n", 1);
    }
    *lenp = len;
    return buf;
}
