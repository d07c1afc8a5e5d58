/* remote_private.c - a copy's private temporary directories served where it runs:
 * see remote_private.h. */
#include "remote_private.h"
#include "remote_private_poll.h"

#include "forward.h"
#include "forward_marshal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_ADDFD_FLAG_SEND
#define SECCOMP_ADDFD_FLAG_SEND (1UL << 1)
#endif

#define PATH_BYTES 4096
#define LOCAL_FIRST (FWD_DIRECT_FD - RP_LOCAL_MAX) /* the copy's private descriptor numbers */

static const struct private_dirs *dirs;
static int local[RP_LOCAL_MAX]; /* this process's descriptor of each, or -1 */
static unsigned char reply[FWD_PAYLOAD_MAX];
/* The copy's current directory when it is a private one (also this process's
 * own then, so that a relative path executed here resolves there), else "". */
static char cwd[PATH_BYTES + 1];
static int cwd_checked; /* read from the copy (the restorer put it there) */
/* A chdir or fchdir of the copy sent home: where it leads once home's answers
 * (a private directory, or "" for one of home's). */
static char cwd_pending[PATH_BYTES + 1];
static int cwd_pending_nr;
static int cwd_ask_home; /* where it leads is for home's getcwd to say */

void rp_init(const struct private_dirs *d)
{
    dirs = d;
    for (int k = 0; k < RP_LOCAL_MAX; k++)
        local[k] = -1;
}

/* Our descriptor of the copy's private descriptor fd, or -1. */
static int local_of(uint64_t fd)
{
    int v = (int)fd;
    if (v < LOCAL_FIRST || v >= LOCAL_FIRST + RP_LOCAL_MAX)
        return -1;
    return local[v - LOCAL_FIRST];
}

static int any_local(void)
{
    for (int k = 0; k < RP_LOCAL_MAX; k++)
        if (local[k] >= 0)
            return 1;
    return 0;
}

int rp_any_open(void)
{
    return any_local();
}

/* ------------------------------------------------------------ paths */

enum where { W_HOME, W_PRIVATE, W_ACROSS };

/* Whether the absolute path p has a "." or ".." component. */
static int has_dots(const char *p)
{
    for (const char *c = p; *c;) {
        while (*c == '/')
            c++;
        size_t n = strcspn(c, "/");
        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 1;
        c += n;
    }
    return 0;
}

/* The absolute path p without "//", "." and "..", as written (no link followed). */
static void normalize(const char *p, char *out)
{
    size_t o = 0;
    while (*p) {
        while (*p == '/')
            p++;
        const char *c = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - c);
        if (n == 0 || (n == 1 && c[0] == '.'))
            continue;
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--;
            continue;
        }
        out[o++] = '/';
        memcpy(out + o, c, n);
        o += n;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
}

/* An absolute path in a private directory is served here.  One that reaches it
 * through "." or ".." is not (the kernel would take a link in between where
 * the words do not: such a path could lead anywhere on this node): EXDEV. */
static enum where of_absolute(const char *path)
{
    static char norm[PATH_BYTES + 1];
    normalize(path, norm);
    for (int k = 0; k < dirs->count; k++) {
        size_t n = strlen(dirs->dir[k]);
        if (strncmp(norm, dirs->dir[k], n) == 0 && (norm[n] == '\0' || norm[n] == '/'))
            return has_dots(path) ? W_ACROSS : W_PRIVATE;
    }
    return W_HOME;
}

/* A path relative to a private descriptor: in its directory, or across. */
static enum where of_relative_to_private(const char *path)
{
    for (const char *c = path; *c;) {
        const char *end = strchr(c, '/');
        size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return W_ACROSS;
        c += n;
        while (*c == '/')
            c++;
    }
    return W_PRIVATE;
}

/* The absolute path of path p relative to the private current directory,
 * normalized, into out; 0, or -ENAMETOOLONG. */
static int from_cwd(const char *p, char *out)
{
    static char joined[2 * PATH_BYTES + 2];
    if (p[0] == '/') {
        normalize(p, out);
        return 0;
    }
    size_t c = strlen(cwd), n = strlen(p);
    if (c + 1 + n > PATH_BYTES)
        return -ENAMETOOLONG;
    memcpy(joined, cwd, c);
    joined[c] = '/';
    memcpy(joined + c + 1, p, n + 1);
    normalize(joined, out);
    return 0;
}

/* A path relative to the private current directory: in it (no "..": only
 * regular files live there), at home (".." leads out, and home's current
 * directory is the same: the path goes as written), or across. */
static enum where of_relative_to_cwd(const char *path)
{
    static char norm[PATH_BYTES + 1];
    if (of_relative_to_private(path) == W_PRIVATE)
        return W_PRIVATE;
    if (from_cwd(path, norm) < 0)
        return W_ACROSS;
    return of_absolute(norm) == W_HOME ? W_HOME : W_ACROSS;
}

/* The argument that is the directory descriptor of path argument a, or -1
 * (the current directory's: home's). */
static int dirfd_arg(long nr, int a)
{
    switch (nr) {
    case SYS_openat:
    case SYS_openat2:
    case SYS_mkdirat:
    case SYS_mknodat:
    case SYS_fchownat:
    case SYS_futimesat:
    case SYS_newfstatat:
    case SYS_unlinkat:
    case SYS_readlinkat:
    case SYS_fchmodat:
    case SYS_faccessat:
    case SYS_faccessat2:
    case SYS_utimensat:
    case SYS_statx:
    case SYS_name_to_handle_at:
    case SYS_execveat:
        return a == 1 ? 0 : -1;
    case SYS_renameat:
    case SYS_renameat2:
    case SYS_linkat:
        return a == 1 ? 0 : a == 3 ? 2 : -1;
    case SYS_symlinkat:
        return a == 2 ? 1 : -1;
    default:
        return -1;
    }
}

/* The link's target (symlink, symlinkat: arg 0) is its contents, not a path. */
static int is_target(long nr, int a)
{
    return a == 0 && (nr == SYS_symlink || nr == SYS_symlinkat);
}

/* Path argument a as the request carries it (NULL: a null pointer). */
static const char *request_path(const void *req, size_t len, int a)
{
    struct fwd_request rq;
    memcpy(&rq, req, sizeof(rq));
    uint32_t in = rq.span[a].in_len;
    size_t off = sizeof(rq) + rq.span[a].off;
    if (rq.args[a] == 0 || in == 0 || off + in > len)
        return NULL;
    const char *p = (const char *)req + off;
    return p[in - 1] == '\0' ? p : NULL;
}

/* Where the path arguments of the call are: home, private, or across.  Read
 * from its request (req, len bytes), which is what would be executed: the copy
 * cannot change a path between the look and the call. */
static enum where of_paths(long nr, const uint64_t args[6], const struct fwd_entry *e,
                           const void *req, size_t len)
{
    int home = 0, private = 0;
    for (int a = 0; a < e->nargs && a < 6; a++) {
        if (e->arg[a].kind != FWD_KIND_PATH || is_target(nr, a))
            continue;
        int d = dirfd_arg(nr, a);
        int dir_private = d >= 0 && local_of(args[d]) >= 0;
        const char *path = request_path(req, len, a);
        enum where w;
        if (path == NULL) /* no path: the descriptor itself (utimensat) */
            w = dir_private ? W_PRIVATE : W_HOME;
        else if (path[0] == '/')
            w = of_absolute(path);
        else if (dir_private)
            w = of_relative_to_private(path);
        else if (cwd[0] && (d < 0 || (int)args[d] == AT_FDCWD))
            w = of_relative_to_cwd(path);
        else
            w = W_HOME;
        if (w == W_ACROSS)
            return W_ACROSS;
        if (w == W_PRIVATE)
            private = 1;
        else
            home = 1;
    }
    return private ? (home ? W_ACROSS : W_PRIVATE) : W_HOME;
}

static int has_path(long nr, const struct fwd_entry *e)
{
    for (int a = 0; a < e->nargs && a < 6; a++)
        if (e->arg[a].kind == FWD_KIND_PATH && !is_target(nr, a))
            return 1;
    return 0;
}

/* Only regular files live there (guard_private.c says the same at home). */
static int makes_other_than_a_file(long nr, const uint64_t args[6])
{
    switch (nr) {
    case SYS_mkdir:
    case SYS_mkdirat:
    case SYS_symlink:
    case SYS_symlinkat:
    case SYS_link:
    case SYS_linkat:
        return 1;
    case SYS_mknod:
        return (args[1] & S_IFMT) != 0 && (args[1] & S_IFMT) != S_IFREG;
    case SYS_mknodat:
        return (args[2] & S_IFMT) != 0 && (args[2] & S_IFMT) != S_IFREG;
    default:
        return 0;
    }
}

static int opens(long nr)
{
    return nr == SYS_open || nr == SYS_openat || nr == SYS_creat || nr == SYS_openat2;
}

/* Put our descriptor fd in the copy at a free private number, answering its
 * call with that number (ADDFD_FLAG_SEND).  Keeps fd. */
static enum rp_action install(int listener, uint64_t id, int fd, long *result)
{
    int k = 0;
    while (k < RP_LOCAL_MAX && local[k] >= 0)
        k++;
    int flags = fcntl(fd, F_GETFD);
    if (k == RP_LOCAL_MAX || flags < 0) {
        *result = k == RP_LOCAL_MAX ? -EMFILE : -errno;
        (void)close(fd); /* ours, never used: nothing to lose */
        return RP_ANSWER;
    }
    struct seccomp_notif_addfd add;
    memset(&add, 0, sizeof(add));
    add.id = id;
    add.flags = SECCOMP_ADDFD_FLAG_SETFD | SECCOMP_ADDFD_FLAG_SEND;
    add.srcfd = (uint32_t)fd;
    add.newfd = (uint32_t)(LOCAL_FIRST + k);
    add.newfd_flags = (flags & FD_CLOEXEC) ? O_CLOEXEC : 0;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0) {
        int err = errno;
        (void)close(fd); /* ours, never installed */
        if (err == ENOENT)
            return RP_ANSWERED; /* interrupted: the copy makes the call again */
        *result = err == EBADF ? -EMFILE : -err; /* beyond its RLIMIT_NOFILE */
        return RP_ANSWER;
    }
    local[k] = fd;
    return RP_ANSWERED;
}

/* The program's umask, for the files created here: the copy's at first (the
 * restorer set it from the image), then what each umask call of the program
 * sets (the call itself goes home too).  0 when known, or -errno. */
static int umask_known;

static int take_umask(pid_t pid)
{
    if (umask_known)
        return 0;
    char path[64], text[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = read(fd, text, sizeof(text) - 1);
    while (n < 0 && errno == EINTR);
    int err = n < 0 ? -errno : 0;
    (void)close(fd); /* read only: nothing to lose */
    if (err < 0)
        return err;
    text[n] = '\0';
    const char *at = strstr(text, "\nUmask:");
    if (at == NULL)
        return -EIO;
    umask((mode_t)(strtoul(at + strlen("\nUmask:"), NULL, 8) & 0777));
    umask_known = 1;
    return 0;
}

/* Execute the call here from its request (buf, len bytes), with our
 * descriptors for the copy's private ones among its directory arguments. */
static long execute_here(pid_t pid, long nr, const uint64_t args[6], void *buf, size_t len)
{
    int err = take_umask(pid);
    if (err < 0)
        return err;
    struct fwd_request rq;
    memcpy(&rq, buf, sizeof(rq));
    for (int a = 0; a < 6; a++) {
        int d = dirfd_arg(nr, a);
        if (d >= 0 && local_of(args[d]) >= 0)
            rq.args[d] = (uint64_t)local_of(args[d]);
    }
    memcpy(buf, &rq, sizeof(rq));
    size_t rlen = fwd_execute(buf, len, reply, sizeof(reply));
    return fwd_apply(pid, nr, args, reply, rlen);
}

/* ------------------------------------------------------------ the current directory */

/* The copy's current directory, as the restorer set it: a private one is
 * this process's too (the first call after the copy starts). */
static void check_cwd(pid_t pid)
{
    if (cwd_checked)
        return;
    cwd_checked = 1;
    char link[64], target[PATH_BYTES + 1];
    snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(link, target, PATH_BYTES);
    if (n <= 0)
        return; /* as before: not a private one */
    target[n] = '\0';
    if (target[0] == '/' && of_absolute(target) == W_PRIVATE && chdir(target) == 0)
        normalize(target, cwd);
}

/* chdir into a private directory: checked here, then sent home too (home's
 * directory of the same name is where the deputy's current directory must be:
 * getcwd, a checkpoint, coming home); where it leads is taken when home answers
 * (rp_home_replied). */
static enum rp_action chdir_private(const void *req, size_t len, long *result)
{
    const char *path = request_path(req, len, 0);
    if (path == NULL || from_cwd(path, cwd_pending) < 0) {
        *result = path == NULL ? -EFAULT : -ENAMETOOLONG;
        return RP_ANSWER;
    }
    int fd = open(cwd_pending, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        *result = -errno;
        return RP_ANSWER;
    }
    (void)close(fd); /* an O_PATH look: nothing to lose */
    cwd_pending_nr = SYS_chdir;
    return RP_NOT_PRIVATE;
}

int rp_home_replied(long nr, long result)
{
    if (nr != cwd_pending_nr || (nr != SYS_chdir && nr != SYS_fchdir))
        return 0;
    cwd_pending_nr = 0;
    if (result < 0)
        return 0;
    if (cwd_pending[0] == '\0' || chdir(cwd_pending) < 0) {
        /* one of home's (or the private one is gone): relative paths go home */
        cwd[0] = '\0';
        return cwd_ask_home;
    }
    memcpy(cwd, cwd_pending, sizeof(cwd));
    return 0;
}

/* A chdir or fchdir that goes home: a private current directory is left when
 * home says it succeeded; where a relative path or a descriptor led, home's
 * getcwd says (ask). */
static void leaving_cwd(long nr, int ask)
{
    if (nr != SYS_chdir && nr != SYS_fchdir)
        return;
    cwd_pending[0] = '\0';
    cwd_pending_nr = nr;
    cwd_ask_home = ask;
}

static char home_cwd[PATH_BYTES + 1];
static uint64_t home_cwd_args[6];

long rp_cwd_request(void *buf, size_t cap)
{
    memset(home_cwd_args, 0, sizeof(home_cwd_args));
    home_cwd_args[0] = (uint64_t)(uintptr_t)home_cwd;
    home_cwd_args[1] = sizeof(home_cwd);
    return fwd_request(getpid(), SYS_getcwd, home_cwd_args, buf, cap);
}

const uint64_t *rp_cwd_args(void)
{
    return home_cwd_args;
}

void rp_cwd_replied(const void *reply, size_t len)
{
    long r = fwd_apply(getpid(), SYS_getcwd, home_cwd_args, reply, len);
    if (r <= 0 || (size_t)r > sizeof(home_cwd) || home_cwd[r - 1] != '\0')
        return; /* unknown: home's, as before */
    if (home_cwd[0] == '/' && of_absolute(home_cwd) == W_PRIVATE && chdir(home_cwd) == 0)
        normalize(home_cwd, cwd);
}

static enum rp_action on_paths(int listener, const struct seccomp_notif *n, const uint64_t args[6],
                               void *buf, size_t len, long *result)
{
    long nr = n->data.nr;
    if (nr == SYS_chdir)
        return chdir_private(buf, len, result);
    if (makes_other_than_a_file(nr, args)) {
        *result = -EPERM;
        return RP_ANSWER;
    }
    long r = execute_here((pid_t)n->pid, nr, args, buf, len);
    if (opens(nr) && r >= 0)
        return install(listener, n->id, (int)r, result);
    *result = r;
    return RP_ANSWER;
}

/* ------------------------------------------------------------ descriptors */

/* Calls whose first argument is a descriptor (and that name no path). */
static int fd_first(long nr)
{
    switch (nr) {
    case SYS_read:
    case SYS_write:
    case SYS_pread64:
    case SYS_pwrite64:
    case SYS_readv:
    case SYS_writev:
    case SYS_preadv:
    case SYS_pwritev:
    case SYS_preadv2:
    case SYS_pwritev2:
    case SYS_lseek:
    case SYS_fstat:
    case SYS_fstatfs:
    case SYS_fsync:
    case SYS_fdatasync:
    case SYS_syncfs:
    case SYS_ftruncate:
    case SYS_fallocate:
    case SYS_fadvise64:
    case SYS_readahead:
    case SYS_sync_file_range:
    case SYS_fchmod:
    case SYS_fchown:
    case SYS_flock:
    case SYS_getdents:
    case SYS_getdents64:
    case SYS_fcntl:
    case SYS_ioctl:
    case SYS_fgetxattr:
    case SYS_fsetxattr:
    case SYS_flistxattr:
    case SYS_fremovexattr:
    case SYS_close:
    case SYS_dup:
    case SYS_dup2:
    case SYS_dup3:
    case SYS_fchdir:
        return 1;
    default:
        return 0;
    }
}

/* A second private descriptor of the same file: close-on-exec in the copy as
 * ours is here (install takes it from ours). */
static enum rp_action dup_private(int listener, uint64_t id, int ours, int cloexec, long *result)
{
    int fd = fcntl(ours, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
    if (fd < 0) {
        *result = -errno;
        return RP_ANSWER;
    }
    return install(listener, id, fd, result);
}

static enum rp_action on_descriptor(int listener, const struct seccomp_notif *n,
                                    const uint64_t args[6], long *result)
{
    long nr = n->data.nr;
    int ours = local_of(args[0]);
    if (nr == SYS_close) {
        local[(int)args[0] - LOCAL_FIRST] = -1;
        (void)close(ours); /* our reference; the copy's own close says what happened */
        return RP_CONTINUE;
    }
    if (nr == SYS_dup2 || nr == SYS_dup3 || nr == SYS_fchdir) {
        *result = -EXDEV;
        return RP_ANSWER;
    }
    if (nr == SYS_dup)
        return dup_private(listener, n->id, ours, 0, result);
    if (nr == SYS_fcntl && (args[1] == F_DUPFD || args[1] == F_DUPFD_CLOEXEC))
        /* the number is from the private range, whatever least one was asked */
        return dup_private(listener, n->id, ours, args[1] == F_DUPFD_CLOEXEC, result);
    return RP_CONTINUE;
}

/* Calls on two descriptors: both private (the copy's call), or across. */
static enum rp_action two_descriptors(long nr, const uint64_t args[6], long *result)
{
    int a, b;
    switch (nr) {
    case SYS_sendfile:
    case SYS_tee:
        a = 0, b = 1;
        break;
    case SYS_copy_file_range:
    case SYS_splice:
        a = 0, b = 2;
        break;
    default:
        return RP_NOT_PRIVATE;
    }
    int pa = local_of(args[a]) >= 0, pb = local_of(args[b]) >= 0;
    if (!pa && !pb)
        return RP_NOT_PRIVATE;
    if (pa && pb)
        return RP_CONTINUE;
    *result = -EXDEV;
    return RP_ANSWER;
}

/* An epoll instance lives at home; a private descriptor is a regular file: as
 * natively, one cannot be watched (EPERM) nor waited on as an instance (EINVAL). */
static enum rp_action on_epoll(long nr, const uint64_t args[6], long *result)
{
    if (nr == SYS_epoll_ctl && local_of(args[2]) >= 0)
        *result = -EPERM;
    else if ((nr == SYS_epoll_ctl || nr == SYS_epoll_wait || nr == SYS_epoll_pwait ||
              nr == SYS_epoll_pwait2) &&
             local_of(args[0]) >= 0)
        *result = -EINVAL;
    else
        return RP_NOT_PRIVATE;
    return RP_ANSWER;
}

enum rp_action rp_serve(int listener, const struct seccomp_notif *n, void *buf, size_t cap,
                        long *result)
{
    if (dirs == NULL || dirs->count == 0)
        return RP_NOT_PRIVATE;
    long nr = n->data.nr;
    uint64_t args[6];
    for (int i = 0; i < 6; i++)
        args[i] = n->data.args[i];
    check_cwd((pid_t)n->pid);
    if (fwd_placement(nr, args) == FWD_BRING_HOME && any_local()) {
        /* it would have to come home (fork, exec, a pinned call), which it cannot
         * while one of its private files is open: the call fails instead of
         * waiting for ever; it works once the file is closed */
        *result = -EAGAIN;
        return RP_ANSWER;
    }
    if (nr == SYS_umask) { /* served at home too: the result is home's */
        umask((mode_t)(args[0] & 0777));
        umask_known = 1;
        return RP_NOT_PRIVATE;
    }
    if ((nr == SYS_dup2 || nr == SYS_dup3) && local_of(args[1]) >= 0) {
        *result = -EXDEV;
        return RP_ANSWER;
    }
    enum rp_action two = two_descriptors(nr, args, result);
    if (two != RP_NOT_PRIVATE)
        return two;
    if (rpp_is_poll(nr)) {
        switch (rpp_begin((pid_t)n->pid, nr, args, local_of, buf, cap, result)) {
        case RPP_NONE:
            return RP_NOT_PRIVATE;
        case RPP_CONTINUE:
            return RP_CONTINUE;
        case RPP_ANSWER:
            return RP_ANSWER;
        case RPP_SEND:
            return RP_SEND_POLL;
        }
    }
    enum rp_action ep = on_epoll(nr, args, result);
    if (ep != RP_NOT_PRIVATE)
        return ep;
    if (nr == SYS_mmap && local_of(args[4]) >= 0 && !(args[3] & MAP_ANONYMOUS))
        return RP_CONTINUE;
    const struct fwd_entry *e = fwd_lookup(nr, args);
    if (e != NULL && fwd_placement(nr, args) == FWD_HOME && has_path(nr, e)) {
        long len = fwd_request((pid_t)n->pid, nr, args, buf, cap);
        if (len < 0) { /* as it would be answered going home */
            *result = len;
            return RP_ANSWER;
        }
        enum where w = of_paths(nr, args, e, buf, (size_t)len);
        if (w == W_ACROSS) {
            *result = -EXDEV;
            return RP_ANSWER;
        }
        if (w == W_PRIVATE)
            return on_paths(listener, n, args, buf, (size_t)len, result);
        if (nr == SYS_chdir) {
            const char *path = request_path(buf, (size_t)len, 0);
            leaving_cwd(nr, path == NULL || path[0] != '/');
        }
        return RP_NOT_PRIVATE; /* home's path (a descriptor first: its directory) */
    }
    if (fd_first(nr) && local_of(args[0]) >= 0)
        return on_descriptor(listener, n, args, result);
    leaving_cwd(nr, 1); /* fchdir to one of home's descriptors */
    return RP_NOT_PRIVATE;
}
