/* mosix_guard.c - answers the base filter's user notifications.
 *
 * The launcher forks the guard before it installs the filter (so the guard is
 * not under it), double-forked so it never shows up in the program's wait(),
 * in its own session so the terminal's signals do not reach it, with
 * /dev/null as its standard descriptors so it keeps no pipe open, not
 * dumpable (its /proc/PID/mem is root's; the program cannot ptrace it).  It
 * receives the listener over a socket (SCM_RIGHTS), acknowledges, and then
 * answers each notification by the table's outcome and the mode of the
 * notifying process (the -e/-u/-w word of its MOSIX_INHERIT, as an inner
 * mosrun sets it; the launching mosrun's mode when there is none):
 *
 *   unsupported  -u: message on the process's stderr, SIGKILL, -e: ENOSYS,
 *                -w: message and ENOSYS
 *   self-only    continues when the argument is the caller's own pid
 *   mmap fix-up  (read-only MAP_SHARED, which the shim makes private) ENOSYS
 *   checkpoint   MOSIX's checkpoint call: asks the node agent (guard_agent.c)
 *                and answers when the agent replies
 *
 * It never blocks on one process: while a checkpoint request waits for the
 * agent it polls the agent connections along with the listener.
 *
 * It exits when the listener reports POLLHUP: no task uses the filter any more. */
#include "mosix_shim.h"

#include "forward_wire.h"
#include "guard_agent.h"
#include "guard_private.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_table.h"

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

static int listener = -1;
/* The notifying task is still the one that made the call (its pid not reused). */
static int still_valid(__u64 id)
{
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

static void read_comm(pid_t pid, char comm[32])
{
    char path[48];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    strcpy(comm, "?");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, comm, 31);
    if (close(fd) != 0 || n <= 0) {
        strcpy(comm, "?");
        return;
    }
    comm[n] = '\0';
    char *nl = strchr(comm, '\n');
    if (nl)
        *nl = '\0';
}

/* Write ``msg`` to the task's own standard error: its descriptor itself when
 * we may take it (offset and O_APPEND shared), else a new open of it. */
static void tell(pid_t pid, int pidfd, const char *msg, size_t len)
{
    int fd = -1;
    if (pidfd >= 0)
        fd = (int)syscall(SYS_pidfd_getfd, pidfd, 2, 0);
    if (fd < 0) {
        char path[48];
        snprintf(path, sizeof(path), "/proc/%d/fd/2", (int)pid);
        fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    }
    if (fd < 0)
        return; /* no standard error to write to */
    ssize_t n;
    do
        n = write(fd, msg, len);
    while (n < 0 && errno == EINTR);
    (void)n;         /* a full or closed stderr loses the message: nothing else to do */
    (void)close(fd); /* only ours; a failure changes nothing */
}

/* The process (thread group) of the notifying task: a thread's notification
 * names the thread.  The task itself when /proc cannot tell. */
static pid_t process_of(pid_t tid)
{
    char path[48], status[2048];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tid;
    ssize_t n = read(fd, status, sizeof(status) - 1);
    (void)close(fd); /* ours, read only: nothing to do if it fails */
    if (n <= 0)
        return tid;
    status[n] = '\0';
    const char *at = strstr(status, "\nTgid:");
    long tgid = at ? strtol(at + 6, NULL, 10) : 0;
    return tgid > 0 ? (pid_t)tgid : tid;
}

static void unsupported(const struct seccomp_notif *req, struct seccomp_notif_resp *resp,
                        enum mosix_mode mode)
{
    resp->error = -ENOSYS;
    if (mode == MOSIX_MODE_ENOSYS)
        return;
    /* the process's name and pid, whichever of its threads made the call */
    pid_t pid = process_of((pid_t)req->pid);
    char comm[32], msg[MOSIX_MESSAGE_MAX];
    read_comm(pid, comm);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (!still_valid(req->id)) { /* gone meanwhile: nothing to say, no one to kill */
        if (pidfd >= 0)
            (void)close(pidfd); /* ours: nothing to do if it fails */
        return;
    }
    size_t len = mosix_message(msg, sizeof(msg),
                               mode == MOSIX_MODE_KILL ? MOSIX_MSG_KILLED : MOSIX_MSG_ENOSYS, comm,
                               (long)pid, req->data.nr);
    tell(pid, pidfd, msg, len);
    if (mode == MOSIX_MODE_KILL) {
        /* SIGKILL: cannot be caught, so no handler lets the program go on.
         * The whole thread group dies (kill() of a thread's id kills its
         * process too). */
        int sent = pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) : -1;
        if (sent != 0)
            (void)kill((pid_t)req->pid, SIGKILL); /* gone already (ESRCH) is fine */
    }
    if (pidfd >= 0)
        (void)close(pidfd); /* ours: nothing to do if it fails */
}

/* Fill ``resp`` for ``req``.  Returns 1 to send it now, 0 when the answer
 * comes later (a checkpoint call waiting for the node agent). */
static int answer(const struct seccomp_notif *req, struct seccomp_notif_resp *resp,
                  enum mosix_mode dflt)
{
    unsigned c = mosix_classify(&req->data);
    resp->id = req->id;
    resp->val = 0;
    resp->error = 0;
    resp->flags = 0;
    if (MOSIX_OUTCOME(c) == MOSIX_OUTCOME_CHECKPOINT)
        return guard_agent_call(listener, req, resp);
    if (guard_private_answer(listener, req, resp))
        return 1; /* mosrun -X: only the prefix of the base filter sends these */
    if (MOSIX_OUTCOME(c) == MOSIX_OUTCOME_SELF_ONLY &&
        (int)req->data.args[MOSIX_OUTCOME_ARG(c)] == (int)req->pid) {
        /* the arguments are in the stopped task's registers: safe to continue */
        resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        return 1;
    }
    enum mosix_mode mode = mosix_mode_of_process((pid_t)req->pid, dflt);
    if (MOSIX_OUTCOME(c) == MOSIX_OUTCOME_FIXUP_PRIVATE) {
        /* a read-only MAP_SHARED without the shim to make it private: ENOSYS
         * in every mode (glibc then reads the file), a warning under -w */
        unsupported(req, resp, mode == MOSIX_MODE_KILL ? MOSIX_MODE_ENOSYS : mode);
        return 1;
    }
    /* unsupported, and self-only on another process */
    unsupported(req, resp, mode);
    return 1;
}

/* /proc/PID/cmdline and environ show the launcher's: blank them in place, so
 * that ps shows "mosix-guard" and the node agent, which finds MOSIX processes
 * by MOSIX_INHERIT in their environment, does not take the guard for one. */
static void blank_identity(char **argv)
{
    extern char **environ;
    for (char **e = environ; e && *e; e++)
        memset(*e, 0, strlen(*e));
    static const char name[] = "mosix-guard";
    for (int i = 0; argv[i]; i++) {
        size_t len = strlen(argv[i]);
        memset(argv[i], 0, len);
        if (i == 0 && len >= sizeof(name) - 1)
            memcpy(argv[i], name, sizeof(name) - 1);
    }
}

static void setup_process(void)
{
    if (setsid() < 0 && errno != EPERM)
        _exit(1);
    if (chdir("/") != 0)
        _exit(1);
    if (prctl(PR_SET_NAME, "mosix-guard", 0, 0, 0) != 0)
        _exit(1);
    /* born so (mosix_exec.c): the program may not read or write our memory */
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
        _exit(1);
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    const int quiet[] = {SIGINT, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGHUP, SIGPIPE, SIGUSR1,
                         SIGUSR2};
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        if (sigaction(quiet[i], &ign, NULL) != 0)
            _exit(1);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        _exit(1);
}

static void detach_descriptors(int keep)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        _exit(1);
    for (int fd = 0; fd <= 2; fd++)
        if (dup2(null, fd) < 0)
            _exit(1);
    if (keep != 3 && dup2(keep, 3) < 0)
        _exit(1);
    listener = 3;
    if (syscall(SYS_close_range, 4, ~0U, 0) != 0)
        for (int fd = 4; fd < 1024; fd++)
            (void)close(fd); /* older kernels: close what may be open */
}

/* Take one notification and answer it (or leave it to guard_agent). */
static void serve_one(struct seccomp_notif *req, size_t req_size, struct seccomp_notif_resp *resp,
                      size_t resp_size, enum mosix_mode mode)
{
    memset(req, 0, req_size);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) {
        if (errno == EINTR || errno == ENOENT)
            return; /* interrupted, or the task died before we read it */
        _exit(1);
    }
    memset(resp, 0, resp_size);
    if (answer(req, resp, mode) &&
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) != 0 && errno != ENOENT && errno != EINTR)
        _exit(1);
}

/* The tree's tag (MOSIX_GUARD_ENV): our pid and start time (/proc/self/stat
 * field 22), as the node agent reads them.  Returns its length, 0 if unknown. */
static size_t guard_tag(char *tag, size_t cap)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd); /* ours, read only: nothing to do if it fails */
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 22; field++) /* past the state, field 3 */
        p = strchr(p + 1, ' ');
    if (p == NULL)
        return 0;
    unsigned long long ticks = strtoull(p + 1, NULL, 10);
    int len = snprintf(tag, cap, "%d:%llu", (int)getpid(), ticks);
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

void mosix_guard_run(int sock, enum mosix_mode mode, int root, char **argv,
                     const struct private_dirs *dirs)
{
    if (guard_private_init(dirs) != 0)
        _exit(1);
    guard_agent_init(getenv(GUARD_AGENT_SOCKET_ENV)); /* before the environment is blanked */
    blank_identity(argv);
    setup_process();
    int fd = mosix_receive_fd(sock);
    if (fd < 0)
        _exit(1);
    /* 6.6+: wake the notifying task on this CPU (3.9 us instead of ~47 us) */
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) != 0 &&
        errno != EINVAL && errno != ENOTTY)
        _exit(1);
    /* the agent watches us before the program starts: killed from then on,
     * we leave the tree's -u processes killed, not under ENOSYS */
    char ack[1 + MOSIX_GUARD_TAG_MAX] = "k";
    size_t ack_len = 1;
    char letter = mode == MOSIX_MODE_KILL ? 'u' : mode == MOSIX_MODE_ENOSYS ? 'e' : 'w';
    if (guard_agent_hello(fd, root, letter))
        ack_len += guard_tag(ack + 1, sizeof(ack) - 1);
    ssize_t n;
    do
        n = write(sock, ack, ack_len);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)ack_len)
        _exit(1);
    (void)close(sock); /* ours: nothing to do if it fails */
    detach_descriptors(fd);

    struct seccomp_notif_sizes sizes;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0)
        _exit(1);
    size_t req_size = sizes.seccomp_notif > sizeof(struct seccomp_notif)
                          ? sizes.seccomp_notif
                          : sizeof(struct seccomp_notif);
    size_t resp_size = sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp)
                           ? sizes.seccomp_notif_resp
                           : sizeof(struct seccomp_notif_resp);
    struct seccomp_notif *req = malloc(req_size);
    struct seccomp_notif_resp *resp = malloc(resp_size);
    if (req == NULL || resp == NULL)
        _exit(1);

    static struct pollfd fds[1 + GUARD_AGENT_MAX];
    for (;;) {
        int timeout = guard_agent_expire();
        fds[0].fd = listener;
        fds[0].events = POLLIN;
        fds[0].revents = 0;
        size_t n = 1 + guard_agent_pollfds(fds + 1);
        int r = poll(fds, n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        /* the listener first: a re-issued checkpoint call is then known
         * before the agent's answer to it is given */
        if (fds[0].revents & POLLIN)
            serve_one(req, req_size, resp, resp_size, mode);
        else if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL))
            _exit(0); /* the filter has no more users */
        guard_agent_events(listener, fds + 1, n - 1);
    }
}
