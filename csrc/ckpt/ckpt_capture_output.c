/* ckpt_capture_output.c - who the target is, and the output file made as that user.
 *
 * The checkpointer runs as root for the system agent; root is needed only to
 * trace the process and read its /proc files.  Nothing root does may follow a
 * path the user chose: every operation on -o PATH (opening its directory,
 * creating the file, linking and renaming it, removing leftovers) is made by
 * the keeper, a child forked before any of them that takes the target's REAL
 * uid, gid and supplementary groups for good (setgroups, setresgid,
 * setresuid).  It hands the open file to us over a socket (SCM_RIGHTS); we
 * only write to that descriptor.  The file is unnamed (O_TMPFILE) until it is
 * committed, so a checkpointer killed while writing leaves nothing behind;
 * where the file system has no O_TMPFILE, a named temporary is used and
 * leftovers of dead checkpointers are removed by the next capture of the
 * same name. */
#include "ckpt_capture_common.h"
#include "forward_wire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME_MAX_BYTES 255
#define TMP_MARK ".tmp."
#define MSG_BYTES 600 /* a keeper's reply: kind byte + one line */

/* ------------------------------------------------------------ identity */

static int four_ids(const char *status, const char *key, unsigned long id[4])
{
    char value[256];
    return ck_status_value(status, key, value, sizeof(value)) == 0 &&
                   sscanf(value, "%lu %lu %lu %lu", &id[0], &id[1], &id[2], &id[3]) == 4
               ? 0
               : -1;
}

_Noreturn static void deny(pid_t pid, const char *reason)
{
    fprintf(stderr, "mosix-ckpt: process %d may not be checkpointed: %s\n", (int)pid, reason);
    exit(CK_EXIT_DENIED);
}

void ck_read_owner(int procfd, pid_t pid, struct ck_owner *o)
{
    char status[8192], value[4096];
    unsigned long uid[4], gid[4];
    memset(o, 0, sizeof(*o));
    if (ck_read_small(procfd, "status", status, sizeof(status)) < 0)
        ck_fail_errno("/proc/%d/status", (int)pid);
    if (four_ids(status, "Uid", uid) < 0 || four_ids(status, "Gid", gid) < 0)
        ck_fail("/proc/%d/status: no Uid or Gid", (int)pid);
    for (int i = 1; i < 4; i++)
        if (uid[i] != uid[0] || gid[i] != gid[0])
            deny(pid, "it runs with set-user-ID or set-group-ID privileges");
    o->uid = (uid_t)uid[0];
    o->gid = (gid_t)gid[0];
    if (ck_status_value(status, "Groups", value, sizeof(value)) == 0)
        for (char *save = NULL, *tok = strtok_r(value, " \t", &save); tok;
             tok = strtok_r(NULL, " \t", &save)) {
            uint64_t g;
            if (o->ngroups == CK_MAX_GROUPS || ck_parse_u64(tok, 10, &g) < 0)
                ck_fail("/proc/%d/status: unreadable Groups", (int)pid);
            o->groups[o->ngroups++] = (gid_t)g;
        }
    if (geteuid() != 0)
        return; /* the user's own checkpointer: the kernel's checks are the user's */
    o->drop = 1;
    if (o->uid == 0)
        return; /* root's own process: only root can ask */
    /* another user's process: only one under the discipline, which cannot have
     * gained privileges since (no_new_privs) */
    if (ck_status_value(status, "NoNewPrivs", value, sizeof(value)) < 0 ||
        strcmp(value, "1") != 0 || ck_status_value(status, "Seccomp", value, sizeof(value)) < 0 ||
        strcmp(value, "2") != 0)
        deny(pid, "it does not run under the MOSIX discipline");
}

/* ------------------------------------------------------------ messages */

static int send_msg(int sock, char kind, const char *text, int fd)
{
    char buf[MSG_BYTES];
    int n = snprintf(buf, sizeof(buf), "%c%s", kind, text ? text : "");
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    ssize_t w = mosix_send_fd(sock, buf, (size_t)n, fd, MSG_NOSIGNAL);
    return w == n ? 0 : -1;
}

/* One message: its kind (0 at the end of the socket, -1 on error), text in buf,
 * a descriptor in *fd (or -1). */
static int recv_msg(int sock, char *buf, size_t cap, int *fd)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {buf, cap - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    ssize_t n;
    do
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR && !ck_interrupted);
    if (fd)
        *fd = -1;
    if (n <= 0)
        return n == 0 ? 0 : -1;
    buf[n] = '\0';
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int got;
        memcpy(&got, CMSG_DATA(c), sizeof(got));
        if (fd)
            *fd = got;
        else
            (void)close(got);
    }
    return (unsigned char)buf[0];
}

/* ------------------------------------------------------------ the keeper */

struct keeper {
    int sock, dirfd, fd;
    int readable_dir; /* opened O_RDONLY: can be listed and synced */
    int named;        /* no O_TMPFILE here: the file has the temporary name from the start */
    const char *name; /* PATH's last component */
    char tmp[NAME_MAX_BYTES + 1];
};

_Noreturn static void keeper_fail(struct keeper *k, const char *what)
{
    char line[MSG_BYTES];
    snprintf(line, sizeof(line), "%s: %s", what, strerror(errno));
    (void)send_msg(k->sock, 'E', line, -1);
    if (k->named && k->fd >= 0)
        (void)unlinkat(k->dirfd, k->tmp, 0);
    _exit(1);
}

static void take_ids(struct keeper *k, const struct ck_owner *o, pid_t parent)
{
    if (!o->drop)
        return;
    if (setgroups(o->ngroups, o->groups) < 0)
        keeper_fail(k, "setgroups");
    if (setresgid(o->gid, o->gid, o->gid) < 0)
        keeper_fail(k, "setresgid");
    if (setresuid(o->uid, o->uid, o->uid) < 0)
        keeper_fail(k, "setresuid");
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) < 0 || r != o->uid || e != o->uid || s != o->uid) {
        errno = EPERM;
        keeper_fail(k, "the owner's ids did not stick");
    }
    /* the change of ids cleared it: die with the checkpointer */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        keeper_fail(k, "prctl(PR_SET_PDEATHSIG)");
    if (getppid() != parent)
        _exit(1);
}

/* Temporary names of checkpointers that died before renaming theirs. */
static void sweep(struct keeper *k)
{
    if (!k->readable_dir)
        return;
    int fd = openat(k->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            (void)close(fd);
        return; /* only tidying */
    }
    size_t prefix = 1 + strlen(k->name) + strlen(TMP_MARK);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        uint64_t pid;
        if (strlen(n) <= prefix || n[0] != '.' || strncmp(n + 1, k->name, strlen(k->name)) != 0 ||
            strncmp(n + 1 + strlen(k->name), TMP_MARK, strlen(TMP_MARK)) != 0 ||
            ck_parse_u64(n + prefix, 10, &pid) < 0 || pid == 0 || pid > 0x7fffffff)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
            (void)unlinkat(k->dirfd, n, 0);
    }
    (void)closedir(d);
}

static void create(struct keeper *k)
{
    k->fd = openat(k->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0);
    if (k->fd >= 0)
        return;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        keeper_fail(k, "cannot create the file");
    k->named = 1;
    for (int attempt = 0; attempt < 2; attempt++) {
        k->fd = openat(k->dirfd, k->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0);
        if (k->fd >= 0)
            return;
        if (errno != EEXIST || attempt || unlinkat(k->dirfd, k->tmp, 0) < 0)
            break;
    }
    keeper_fail(k, "cannot create a temporary file");
}

static void commit(struct keeper *k)
{
    if (fsync(k->fd) < 0)
        keeper_fail(k, "fsync");
    if (fchmod(k->fd, 0400) < 0)
        keeper_fail(k, "fchmod");
    if (!k->named) {
        char self[64];
        snprintf(self, sizeof(self), "/proc/self/fd/%d", k->fd);
        for (int attempt = 0;; attempt++) {
            if (linkat(AT_FDCWD, self, k->dirfd, k->tmp, AT_SYMLINK_FOLLOW) == 0)
                break;
            /* left by a killed checkpointer that had this pid */
            if (errno != EEXIST || attempt || unlinkat(k->dirfd, k->tmp, 0) < 0)
                keeper_fail(k, "link");
        }
        k->named = 1;
    }
    if (renameat(k->dirfd, k->tmp, k->dirfd, k->name) < 0)
        keeper_fail(k, "rename");
    k->named = 0; /* the file is the checkpoint now: nothing to remove */
    /* make the rename durable; a directory opened O_PATH (not readable) cannot be synced */
    if (k->readable_dir && fsync(k->dirfd) < 0)
        keeper_fail(k, "fsync of the directory");
}

_Noreturn static void keeper_run(int sock, int cwdfd, const char *path, const struct ck_owner *o,
                                 pid_t parent)
{
    struct keeper k = {.sock = sock, .dirfd = -1, .fd = -1};
    take_ids(&k, o, parent);
    /* from here on, the user's permissions */
    char *dir;
    const char *slash = strrchr(path, '/');
    k.name = slash ? slash + 1 : path;
    dir = slash ? (slash == path ? strdup("/") : strndup(path, (size_t)(slash - path)))
                : strdup(".");
    if (!dir) {
        errno = ENOMEM;
        keeper_fail(&k, "strdup");
    }
    if (!*k.name || strcmp(k.name, ".") == 0 || strcmp(k.name, "..") == 0) {
        errno = EINVAL;
        keeper_fail(&k, "not a file name");
    }
    int keep = (int)(NAME_MAX_BYTES - 1 - strlen(TMP_MARK) - 10); /* "." name mark pid fits */
    snprintf(k.tmp, sizeof(k.tmp), ".%.*s%s%d", keep, k.name, TMP_MARK, (int)parent);
    k.dirfd = openat(cwdfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    k.readable_dir = k.dirfd >= 0;
    if (k.dirfd < 0 && errno == EACCES) /* searchable but not readable */
        k.dirfd = openat(cwdfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (k.dirfd < 0)
        keeper_fail(&k, dir);
    sweep(&k);
    create(&k);
    if (send_msg(sock, 'F', NULL, k.fd) < 0)
        _exit(1);
    char buf[16];
    int kind = recv_msg(sock, buf, sizeof(buf), NULL);
    if (kind == 'K') {
        commit(&k);
        (void)send_msg(sock, 'O', NULL, -1);
        _exit(0);
    }
    /* discarded, or the checkpointer is gone: an unnamed file vanishes with us */
    if (k.named)
        (void)unlinkat(k.dirfd, k.tmp, 0);
    _exit(0);
}

/* ------------------------------------------------------------ our side */

static void reap_keeper(struct ck_output *o)
{
    if (o->sock >= 0 && close(o->sock) < 0)
        ck_warn("close: %s", strerror(errno));
    o->sock = -1;
    if (o->keeper <= 0)
        return;
    pid_t r;
    int status;
    do
        r = waitpid(o->keeper, &status, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        ck_warn("waitpid for the keeper %d: %s", (int)o->keeper, strerror(errno));
    o->keeper = 0;
}

void ck_output_create(struct ck_output *o, int cwdfd, const char *path,
                      const struct ck_owner *owner)
{
    memset(o, 0, sizeof(*o));
    o->fd = o->sock = -1;
    o->name = strdup(path);
    if (!o->name)
        ck_fail("out of memory");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        ck_fail_errno("socketpair");
    pid_t parent = getpid();
    fflush(stderr);
    pid_t child = fork();
    if (child < 0)
        ck_fail_errno("fork");
    if (child == 0) {
        (void)close(sv[0]);
        keeper_run(sv[1], cwdfd, path, owner, parent);
    }
    o->keeper = child;
    o->sock = sv[0];
    if (close(sv[1]) < 0)
        ck_fail_errno("close");
    char buf[MSG_BYTES];
    int fd;
    int kind = recv_msg(o->sock, buf, sizeof(buf), &fd);
    if (kind == 'F' && fd >= 0) {
        o->fd = fd;
        return;
    }
    if (fd >= 0)
        (void)close(fd);
    reap_keeper(o);
    if (kind == 'E')
        ck_fail("%s: %s", path, buf + 1);
    ck_fail("%s: the file's keeper ended", path);
}

void ck_output_commit(struct ck_output *o)
{
    if (fsync(o->fd) < 0)
        ck_fail_errno("%s: fsync", o->name);
    if (send_msg(o->sock, 'K', NULL, -1) < 0)
        ck_fail_errno("%s: the file's keeper", o->name);
    char buf[MSG_BYTES];
    int kind = recv_msg(o->sock, buf, sizeof(buf), NULL);
    if (kind != 'O') {
        reap_keeper(o);
        if (kind == 'E')
            ck_fail("%s: %s", o->name, buf + 1);
        ck_fail("%s: the file's keeper ended", o->name);
    }
    reap_keeper(o);
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) < 0)
        ck_fail_errno("%s: close", o->name);
}

void ck_output_discard(struct ck_output *o)
{
    if (o->fd >= 0 && close(o->fd) < 0)
        ck_warn("close: %s", strerror(errno));
    o->fd = -1;
    reap_keeper(o); /* the end of its socket: it removes a named temporary */
}
