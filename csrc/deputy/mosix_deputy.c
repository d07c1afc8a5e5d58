/* mosix_deputy.c - the home half of a migrated process.
 *
 * Usage (executed by mosix-ckpt inside the migrating process, ckpt_handoff.c):
 *   mosix-deputy -a AGENT_SOCKET -k TOKEN -r RESTORER [-x FD,FD...]
 *
 * The process that ran the program keeps its pid, parent, descriptors,
 * current directory, session and terminal; its memory went with its image to
 * another node.  As the deputy it:
 *   - asks its node agent for the channel to the remote copy (the agent set it
 *     up with the other node's agent and hands it over by SCM_RIGHTS);
 *   - executes each forwarded system call natively (forward.h) and replies;
 *   - passes the signals sent to it on to the copy (SIGKILL cannot be caught:
 *     the deputy dies, the channel closes, and the copy is killed);
 *   - stops when the copy stops, with its signal (SIGSTOP through the agent:
 *     the discipline lets no process send it), and ends as the copy ended (exit status or
 *     death signal), so the parent's wait() sees the program's own end;
 *   - removes the files of the process's private directories (mosrun -X) here:
 *     they went with the image and live where the process runs;
 *   - keeps the program's close-on-exec flags true (-x: those the capturer
 *     cleared for the deputy's execve, set back at start);
 *   - when the copy comes home, executes the restorer on the image (-r) in
 *     place, with the flags as they are then (cleared for that execve, listed
 *     for the restorer to set again);
 *   - frozen (migrate PID freeze: no channel yet, its image in a file), waits
 *     for the agent's order to come home from that file, and through an agent
 *     restart: it connects again and says hello again;
 *   - when the channel breaks, tells the agent and does what it says (another
 *     channel, an image to restore from, or an end with a message: the
 *     process is lost; or, when it has a checkpoint taken at home, the line
 *     and the restorer on that checkpoint file, so it resumes from there).
 * A copy with the preload shim's handler also sends its calls itself over
 * direct channels (the fast path: one per thread that may call at once), each
 * served by a thread of its own (deputy_direct.c), so a call blocked at home
 * holds no other thread's; they may close at any time (the copy left or
 * ended: the first channel says what happens).  Signals, STOPPED and EXIT stay
 * on the first channel, served by the main thread; before a reply on a direct
 * channel, the signals passed so far have been delivered (the supervisor
 * acknowledges each with SIGNALED), so the copy sees them as the call
 * returns, as it would with the supervisor in between.
 * A call that blocks at home (a read of a terminal) does not keep the process
 * from leaving: the first channel raises SIGIO here when a frame arrives
 * (O_ASYNC), so HOLD interrupts the call, which did nothing (EINTR), and the
 * reply says to make it again where the process goes (FWD_RET_AGAIN); any
 * other frame in the middle of a call is taken and the call executed again.
 * Frames: forward_wire.h.  The deputy's own descriptors sit at the top of the
 * descriptor range, and the program's calls that would hit them are served as
 * if they were not there. */
#include "deputy_direct.h"
#include "deputy_home.h"
#include "deputy_ids.h"
#include "deputy_private.h"
#include "deputy_resume.h"
#include "forward.h"
#include "forward_table.h"
#include "forward_wire.h"
#include "guard_cbor.h"
#include "mosix_names.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NSIG_MAX 64
#define AGENT_FRAME_MAX 4096
#define AGENT_FDS_MAX (1 + FWD_DIRECT_MAX) /* with "deputy-channel": the first, the direct ones */

static int chan = -1, agent = -1, sigpipe_r = -1, sigpipe_w = -1;
static const char *restorer, *cloexec_list = "";
static const char *agent_path, *agent_token; /* -a and -k: to say hello again */
static unsigned char req[FWD_FRAME_MAX_PAYLOAD], rep[FWD_FRAME_MAX_PAYLOAD];
static int pending[NSIG_MAX + 1]; /* signals caught while there is no channel */
static volatile sig_atomic_t caught; /* a signal's byte may be in the pipe */
static unsigned long channel_gen;    /* channels taken so far */
static int hold, held_told;          /* HOLD: the direct channels are not read; HELD sent */
static volatile sig_atomic_t poked;  /* a frame arrived on the first channel (SIGIO) */
static volatile sig_atomic_t continued; /* SIGCONT arrived (the deputy's own stop ended) */
static volatile sig_atomic_t async_fd = -1; /* the channel's number that raises SIGIO, even
                                               once closed (a late SIGIO is not the program's) */

/* ------------------------------------------------------------ ends */

/* One line "mosrun: process PID: ..." on the process's standard error. */
static void say(const char *fmt, va_list ap)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "mosrun: process %d: ", (int)getpid());
    if (n > 0 && (size_t)n < sizeof(line))
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (n > 0 && (size_t)n < sizeof(line) - 1) {
        line[n++] = '\n';
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w; /* nothing else can be done about a lost standard error */
    }
}

/* The process ends for good: a line on its standard error, then SIGKILL. */
_Noreturn static void lost(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn static void lost(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    (void)kill(getpid(), SIGKILL);
    _exit(137);
}

static void tell_user(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tell_user(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
}

/* End as the copy ended: its exit status, or its death signal. */
_Noreturn static void end_like(uint64_t status)
{
    int st = (int)status;
    if (WIFEXITED(st))
        _exit(WEXITSTATUS(st));
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none); /* a core, if any, was the copy's */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    (void)sigaction(sig, &dfl, NULL);
    sigset_t all;
    (void)sigemptyset(&all);
    (void)sigprocmask(SIG_SETMASK, &all, NULL);
    (void)kill(getpid(), sig);
    _exit(128 + sig); /* a signal whose default is not death */
}

/* ------------------------------------------------------------ descriptors */

/* Move fd to the top of the descriptor range (close-on-exec); the new number. */
static int move_high(int fd)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        lost("getrlimit: %s", strerror(errno));
    long top = rl.rlim_cur > DEPUTY_FD_TOP ? DEPUTY_FD_TOP : (long)rl.rlim_cur;
    for (long want = top - 1; want >= top - DEPUTY_OWN_FDS && want > 2; want--) {
        if (fcntl((int)want, F_GETFD) >= 0 || errno != EBADF)
            continue; /* taken */
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, (int)want);
        if (nfd < 0)
            lost("F_DUPFD_CLOEXEC: %s", strerror(errno));
        if (close(fd) < 0)
            lost("close: %s", strerror(errno));
        return nfd;
    }
    return fd; /* the top is full: leave it where it is */
}

static int is_own(long fd)
{
    return fd >= 0 && (fd == chan || fd == agent || fd == sigpipe_r || fd == sigpipe_w ||
                       direct_is_own(fd));
}

static void relocate(int *fd)
{
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        lost("F_DUPFD_CLOEXEC: %s", strerror(errno));
    if (close(*fd) < 0)
        lost("close: %s", strerror(errno));
    *fd = nfd;
}

/* A call of the program that names one of our descriptors as a target: ours
 * move out of the way (dup2/dup3 onto them), or the call is answered as if the
 * descriptor were not open.  Returns 1 with *ret set when answered here. */
static int own_fd_call(long nr, const uint64_t a[6], int64_t *ret)
{
    int *mine[] = {&chan, &agent, &sigpipe_r, &sigpipe_w};
    switch (nr) {
    case SYS_dup2:
    case SYS_dup3:
        for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
            if (*mine[i] == (int)a[1])
                relocate(mine[i]);
        direct_relocate((int)a[1]);
        return 0;
    case SYS_close:
        if (is_own((long)(int)a[0])) {
            *ret = -EBADF;
            return 1;
        }
        return 0;
    case SYS_close_range: {
        /* close around ours: [first, last] minus our descriptors */
        unsigned first = (unsigned)a[0], last = (unsigned)a[1];
        if (first > last) {
            *ret = -EINVAL;
            return 1;
        }
        unsigned at = first;
        for (;;) {
            unsigned stop = last;
            int hit = 0;
            for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++) {
                unsigned fd = (unsigned)*mine[i];
                if (*mine[i] >= 0 && fd >= at && fd <= stop) {
                    stop = fd;
                    hit = 1;
                }
            }
            for (unsigned fd = at; fd <= stop && fd < DEPUTY_FD_TOP; fd++)
                if (direct_is_own(fd)) {
                    stop = fd;
                    hit = 1;
                    break;
                }
            if (!hit || stop > at) {
                unsigned end = hit ? stop - 1 : stop;
                if (syscall(SYS_close_range, at, end, (unsigned)a[2]) < 0) {
                    *ret = -errno;
                    return 1;
                }
            }
            if (!hit || stop == last)
                break;
            at = stop + 1;
        }
        *ret = 0;
        return 1;
    }
    default:
        return 0;
    }
}

/* A direct channel's server cannot go on: the process is lost. */
_Noreturn static void direct_fatal(const char *what, int err)
{
    lost("%s: %s", what, strerror(err));
}

/* ------------------------------------------------------------ signals */

static void on_signal(int sig, siginfo_t *info, void *context)
{
    (void)context;
    if (sig == SIGIO && info->si_code > 0 && info->si_fd == async_fd) {
        poked = 1; /* the channel's own (O_ASYNC), not the program's: it interrupts a call */
        return;
    }
    if (sig == SIGIO && info->si_code == SI_TKILL && info->si_pid == getpid()) {
        direct_poked = 1; /* the main thread's poke of a direct channel's server */
        return;
    }
    if (sig == SIGCONT)
        continued = 1;
    unsigned char b = (unsigned char)sig;
    int saved = errno;
    ssize_t w = write(sigpipe_w, &b, 1); /* full pipe: the signal is already queued */
    (void)w;
    caught = 1;
    errno = saved;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal; /* no SA_RESTART: a blocked forwarded call returns EINTR */
    sa.sa_flags = SA_SIGINFO;
    if (sigfillset(&sa.sa_mask) < 0)
        lost("sigfillset: %s", strerror(errno));
    for (int sig = 1; sig <= NSIG_MAX; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || (sig >= 32 && sig < SIGRTMIN))
            continue;
        if (sigaction(sig, &sa, NULL) < 0)
            lost("sigaction %d: %s", sig, strerror(errno));
    }
    sigset_t none;
    if (sigemptyset(&none) < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        lost("sigprocmask: %s", strerror(errno));
}

/* ------------------------------------------------------------ channel I/O */

/* Forward the signals caught so far (kept while there is no channel). */
static void pass_signals(void)
{
    unsigned char sigs[64];
    caught = 0; /* before reading: a later signal sets it again */
    for (;;) {
        ssize_t n = read(sigpipe_r, sigs, sizeof(sigs));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (sigs[i] <= NSIG_MAX)
                pending[sigs[i]]++;
    }
    if (chan < 0)
        return;
    unsigned long passed = 0;
    for (int sig = 1; sig <= NSIG_MAX && chan >= 0; sig++)
        for (; pending[sig] > 0; pending[sig]--)
            if (fwd_send_frame(chan, FWD_FRAME_SIGNAL, (uint64_t)sig, NULL, 0) < 0)
                break; /* the channel broke: the main loop sees it */
            else
                passed++;
    if (passed) {
        direct_signals_sent(passed);
        direct_interrupt_calls(); /* as the signal would have, at home */
    }
}

/* ------------------------------------------------------------ the agent */

static void agent_send(const char *op, int with_token, const char *token)
{
    unsigned char frame[AGENT_FRAME_MAX];
    struct cbor_out o = {frame + 4, sizeof(frame) - 4, 0, 0};
    cbor_put_map(&o, with_token ? 3 : 2);
    cbor_put_cstr(&o, "op");
    cbor_put_cstr(&o, op);
    cbor_put_cstr(&o, "pid");
    cbor_put_uint(&o, (uint64_t)getpid());
    if (with_token) {
        cbor_put_cstr(&o, "token");
        cbor_put_cstr(&o, token);
    }
    if (o.overflow)
        lost("deputy: request too long");
    uint32_t len = (uint32_t)o.len;
    frame[0] = (unsigned char)(len >> 24);
    frame[1] = (unsigned char)(len >> 16);
    frame[2] = (unsigned char)(len >> 8);
    frame[3] = (unsigned char)len;
    if (fwd_write_full(agent, frame, 4 + len) < 0)
        lost("the node agent is gone: %s", strerror(errno));
}

/* One order from the agent: its op and error text, and the descriptors that
 * came with it (-1: none).  -1 when the agent is gone (the connection ended). */
static int agent_receive(struct agent_reply *reply, int fd[AGENT_FDS_MAX])
{
    unsigned char head[4], body[AGENT_FRAME_MAX];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(AGENT_FDS_MAX * sizeof(int))];
    } control;
    struct iovec iov = {head, sizeof(head)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control.buf;
    m.msg_controllen = sizeof(control.buf);
    for (int i = 0; i < AGENT_FDS_MAX; i++)
        fd[i] = -1;
    ssize_t n;
    do
        n = recvmsg(agent, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    while (n < 0 && errno == EINTR);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
        return -1;
    if (n != (ssize_t)sizeof(head))
        lost("the node agent is gone");
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len >= CMSG_LEN(sizeof(int)) &&
            c->cmsg_len <= CMSG_LEN(AGENT_FDS_MAX * sizeof(int)))
            memcpy(fd, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0));
    uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 |
                   head[3];
    if (len > sizeof(body) || fwd_read_full(agent, body, len) < 0 ||
        cbor_decode_reply(body, len, reply) != 0)
        lost("an unreadable order from the node agent");
    return 0;
}

static int connect_agent(const char *path, int quiet)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        lost("agent socket path too long");
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        lost("socket: %s", strerror(errno));
    int rc;
    do
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        if (quiet && close(fd) == 0)
            return -1;
        lost("cannot reach the node agent at %s: %s", path, strerror(errno));
    }
    return fd;
}

/* The program's close-on-exec flags, true while the deputy serves it (set back
 * at start from -x, kept by the forwarded calls that it executes): cleared now
 * so that the restorer's execve keeps those descriptors, and listed (FD,FD...)
 * for the restorer to set again.  The deputy's own descriptors and fd[] are not
 * the program's. */
static const char *take_cloexec(const int fd[2])
{
    static char list[8192];
    size_t used = 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        lost("getrlimit: %s", strerror(errno));
    long top = rl.rlim_cur > DEPUTY_FD_TOP ? DEPUTY_FD_TOP : (long)rl.rlim_cur;
    list[0] = 0;
    for (long n = 0; n < top; n++) {
        if (is_own(n) || n == fd[0] || n == fd[1])
            continue;
        int flags = fcntl((int)n, F_GETFD);
        if (flags < 0) {
            if (errno != EBADF)
                lost("F_GETFD: %s", strerror(errno));
            continue;
        }
        if (!(flags & FD_CLOEXEC))
            continue;
        if (fcntl((int)n, F_SETFD, flags & ~FD_CLOEXEC) < 0)
            lost("F_SETFD: %s", strerror(errno));
        int w = snprintf(list + used, sizeof(list) - used, "%s%ld", used ? "," : "", n);
        if (w < 0 || (size_t)w >= sizeof(list) - used)
            lost("too many close-on-exec descriptors");
        used += (size_t)w;
    }
    return list;
}

/* -x at start: the close-on-exec flags the capturer cleared for our execve. */
static void restore_cloexec(const char *text)
{
    while (*text) {
        char *end;
        long n = strtol(text, &end, 10);
        if (end == text || n < 0 || (*end && *end != ','))
            lost("-x %s: want descriptor numbers separated by commas", cloexec_list);
        if (fcntl((int)n, F_SETFD, FD_CLOEXEC) < 0)
            lost("descriptor %ld: F_SETFD: %s", n, strerror(errno));
        text = *end ? end + 1 : end;
    }
}

/* Signals caught here and not passed on (no channel: the process is frozen,
 * or between channels) are the program's: raised again with every signal
 * blocked, they stay pending through execve and the restorer (which keeps
 * them blocked) until the image's mask is set, and meet the image's actions. */
static void keep_pending(void)
{
    sigset_t all;
    if (sigfillset(&all) < 0 || sigprocmask(SIG_SETMASK, &all, NULL) < 0)
        lost("sigprocmask: %s", strerror(errno));
    int saved_chan = chan;
    chan = -1; /* collect only */
    pass_signals();
    chan = saved_chan;
    /* SIGIO to this thread: the direct channels' servers do not block it (their poke) */
    for (int sig = 1; sig <= NSIG_MAX; sig++)
        if (pending[sig] > 0 && sig != SIGKILL && sig != SIGSTOP &&
            (sig == SIGIO ? syscall(SYS_tgkill, getpid(), getpid(), sig) : kill(getpid(), sig)) < 0)
            lost("kill %d: %s", sig, strerror(errno));
}

/* Come home: the restorer rebuilds the program in this process from the
 * image on fd[0]; its complaint, if any, goes to fd[1] (the agent's pipe, or
 * -1: the process's standard error). */
_Noreturn static void come_home(const int fd[2])
{
    keep_pending();
    char fdtext[16], errtext[16];
    int errfd = fd[1] >= 0 ? fd[1] : STDERR_FILENO;
    snprintf(fdtext, sizeof(fdtext), "%d", fd[0]);
    snprintf(errtext, sizeof(errtext), "%d", errfd);
    if (fcntl(fd[0], F_SETFD, 0) < 0 || (fd[1] >= 0 && fcntl(fd[1], F_SETFD, 0) < 0))
        lost("F_SETFD: %s", strerror(errno));
    const char *list = take_cloexec(fd);
    char *argv[] = {(char *)restorer, "-H", "-x", (char *)(list[0] ? list : "-"),
                    "-p", "mosrun", "-e", errtext, fdtext, NULL};
    extern char **environ;
    execve(restorer, argv, environ);
    lost("cannot execute %s: %s", restorer, strerror(errno));
}

/* Coming home (fd[0]: the image's connection, fd[1]: the agent's pipe): the
 * image taken whole and checked (deputy_home.c), then the restorer in place.
 * Returns when it cannot be used: the reason goes on the process's standard
 * error and to the agent, which lets the copy go on where it runs. */
static void come_home_checked(const int fd[2])
{
    char why[400];
    int image = deputy_take_image(fd[0], why, sizeof(why));
    if (image >= 0 && deputy_check_image(restorer, image, why, sizeof(why)) == 0) {
        if (close(fd[0]) < 0)
            lost("close: %s", strerror(errno));
        int checked[2] = {image, fd[1]};
        come_home(checked);
    }
    if (image >= 0 && close(image) < 0)
        lost("close: %s", strerror(errno));
    tell_user("cannot come home: %s; it goes on where it runs", why);
    ssize_t w;
    do /* short: a pipe takes it whole; an agent gone learns nothing */
        w = write(fd[1], why, strlen(why));
    while (w < 0 && errno == EINTR);
    if (close(fd[1]) < 0 || close(fd[0]) < 0)
        lost("close: %s", strerror(errno));
}

/* The end of the copy, from the agent: with a descriptor, the last checkpoint
 * of the process to recover from here (the line says so), its files first
 * back as they were then (deputy_resume.c); else the end. */
_Noreturn static void ended(const struct agent_reply *reply, const int fd[2], const char *dflt)
{
    const char *why = reply->error[0] ? reply->error : dflt;
    if (fd[0] < 0)
        lost("%s", why);
    if (fd[1] >= 0 && close(fd[1]) < 0)
        lost("close: %s", strerror(errno));
    char trouble[300];
    direct_drain(); /* no forwarded write of the lost copy's after the rewind */
    if (deputy_rewind_files(fd[0], trouble, sizeof(trouble)) < 0)
        lost("%s; cannot resume from the checkpoint: %s", why, trouble);
    tell_user("%s", why); /* after the rewind, which may cut back a grown stderr file */
    int own[2] = {fd[0], -1};
    come_home(own);
}

/* A frame arriving on the first channel raises SIGIO here (on_signal), in the
 * main thread (the direct channels' servers are other threads). */
static void arm_channel(void)
{
    int fl = fcntl(chan, F_GETFL);
    struct f_owner_ex owner = {F_OWNER_TID, getpid()}; /* the main thread's id */
    if (fl < 0 || fcntl(chan, F_SETOWN_EX, &owner) < 0 || fcntl(chan, F_SETSIG, SIGIO) < 0 ||
        fcntl(chan, F_SETFL, fl | O_ASYNC) < 0)
        lost("the channel: O_ASYNC: %s", strerror(errno));
    async_fd = chan;
}

/* The channels that came with "deputy-channel": the first, and the direct ones
 * if any (each served by a thread of its own from now on). */
static void take_channels(const int fd[AGENT_FDS_MAX])
{
    chan = move_high(fd[0]);
    arm_channel();
    int directs[FWD_DIRECT_MAX], n = 0;
    for (int i = 1; i < AGENT_FDS_MAX && fd[i] >= 0; i++)
        directs[n++] = move_high(fd[i]);
    channel_gen++;
    hold = held_told = 0;
    direct_start(directs, n);
}

static void close_channels(void)
{
    if (chan >= 0 && close(chan) < 0)
        lost("close: %s", strerror(errno));
    chan = -1;
    direct_retire();
}

/* The agent ended (stopped or restarted) while this process waits for its
 * first order, having had no channel yet: it is frozen (its image on disk, the
 * agent keeps the freeze across a restart), or a migration's hello was not yet
 * answered.  Connect again as soon as an agent listens (every half second) and
 * say hello again: the new agent answers (an end if the token is not its). */
static void hello_again(void)
{
    if (close(agent) < 0)
        lost("close: %s", strerror(errno));
    agent = -1;
    for (;;) {
        int fd = connect_agent(agent_path, 1);
        if (fd >= 0) {
            agent = move_high(fd);
            agent_send(MOSIX_DEPUTY_OP_HELLO, 1, agent_token);
            return;
        }
        struct timespec half = {0, 500000000L};
        if (nanosleep(&half, NULL) < 0 && errno != EINTR)
            lost("nanosleep: %s", strerror(errno));
    }
}

/* Wait for the agent's order after the channel ended (or the copy left). */
static void await_order(void)
{
    for (;;) {
        struct agent_reply reply;
        int fd[AGENT_FDS_MAX];
        struct pollfd p[2] = {{agent, POLLIN, 0}, {sigpipe_r, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            lost("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            pass_signals(); /* kept until there is a channel */
        if (!p[0].revents)
            continue;
        if (agent_receive(&reply, fd) < 0) {
            if (channel_gen > 0)
                lost("the node agent is gone");
            hello_again();
            continue;
        }
        if (strcmp(reply.op, MOSIX_DEPUTY_OP_CHANNEL) == 0 && fd[0] >= 0) {
            take_channels(fd);
            pass_signals();
            return;
        }
        if (strcmp(reply.op, MOSIX_DEPUTY_OP_HOME) == 0 && fd[0] >= 0 && fd[1] >= 0) {
            come_home_checked(fd);
            lost("its remote copy is out of reach: it cannot go on");
        }
        if (strcmp(reply.op, MOSIX_DEPUTY_OP_END) == 0)
            ended(&reply, fd, "its remote copy was lost");
        lost("an unexpected order from the node agent: %s", reply.op);
    }
}

static void channel_lost(void)
{
    close_channels();
    agent_send(MOSIX_DEPUTY_OP_LOST, 0, NULL);
    await_order();
}

/* ------------------------------------------------------------ serving */

/* The call a request carries (forward.h); -1 if it is not a request. */
static int request_call(const void *r, size_t len, long *nr, uint64_t args[6])
{
    struct fwd_request head;
    if (len < sizeof(head))
        return -1;
    memcpy(&head, r, sizeof(head));
    if (head.magic != FWD_REQUEST_MAGIC)
        return -1;
    *nr = (long)head.nr;
    memcpy(args, head.args, sizeof(head.args));
    return 0;
}

/* A reply with just a result (no output buffers). */
static size_t reply_result(void *r, int64_t ret)
{
    struct fwd_reply head = {FWD_REPLY_MAGIC, 0, ret, 0, 0};
    memcpy(r, &head, sizeof(head));
    return sizeof(head);
}

static void first_channel_frame(void);

/* The copy stopped with signal ``sig``: stop the same way, so that the parent's
 * wait (WUNTRACED) sees the program's stop and a SIGCONT to this pid (passed
 * on) continues both.  SIGTSTP, SIGTTIN and SIGTTOU are raised here with
 * their default action; when the kernel discards one (this process group is
 * orphaned, as it would have been for the program at home), the copy is
 * continued.  SIGSTOP the discipline sends as SIGTSTP, even to itself: the
 * agent sends it (DeputyStop). */
static void stop_like(uint64_t sig)
{
    if (sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU) {
        agent_send(MOSIX_DEPUTY_OP_STOP, 0, NULL);
        return;
    }
    struct sigaction dfl, mine;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    continued = 0;
    if (sigaction((int)sig, &dfl, &mine) < 0)
        lost("sigaction %d: %s", (int)sig, strerror(errno));
    if (kill(getpid(), (int)sig) < 0) /* delivered (stopped, then continued) as it returns */
        lost("kill %d: %s", (int)sig, strerror(errno));
    if (sigaction((int)sig, &mine, NULL) < 0)
        lost("sigaction %d: %s", (int)sig, strerror(errno));
    if (!continued) { /* discarded: no stop here, none for the copy */
        pending[SIGCONT]++;
        pass_signals();
    }
}

/* The frames that arrived on the first channel during a call (they
 * interrupted it): HOLD, SIGNALED, ... never a request (one call at a time). */
static void take_control_frames(void)
{
    for (;;) {
        struct pollfd p = {chan, POLLIN, 0};
        int r = chan < 0 ? 0 : poll(&p, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            lost("poll: %s", strerror(errno));
        if (r == 0)
            return;
        first_channel_frame();
    }
}

/* Execute the request in req; the reply's length in rep.  A call interrupted
 * only by the channel's frames (it did nothing: EINTR, no signal of the
 * program's) is executed again, or, when the process is leaving, not at all. */
static size_t execute(size_t len)
{
    for (;;) {
        poked = 0;
        size_t n = fwd_execute(req, len, rep, sizeof(rep));
        if (!poked || caught || fwd_reply_ret(rep, n) != -EINTR)
            return n;
        take_control_frames();
        if (hold || chan < 0)
            return reply_result(rep, FWD_RET_AGAIN);
    }
}

/* A request on the first channel: execute, reply there. */
static void serve_one(const struct fwd_frame *f)
{
    long nr;
    uint64_t args[6];
    size_t n;
    int64_t ret;
    int parsed = request_call(req, f->len, &nr, args) == 0;
    if (parsed && own_fd_call(nr, args, &ret))
        n = reply_result(rep, ret);
    else if ((n = deputy_id_call(req, f->len, rep, sizeof(rep))) == 0) {
        n = execute(f->len);
        if (parsed)
            deputy_note_write(nr, args, fwd_reply_ret(rep, n));
    }
    if (caught) /* before the reply: the copy gets the signal, then the result */
        pass_signals();
    if (chan >= 0 && fwd_send_frame(chan, FWD_FRAME_REPLY, f->id, rep, n) < 0)
        channel_lost();
}

/* A frame on the first channel. */
static void first_channel_frame(void)
{
    struct fwd_frame f;
    if (fwd_read_full(chan, &f, sizeof(f)) < 0) {
        channel_lost();
        return;
    }
    if (f.len > sizeof(req) || (f.len && fwd_read_full(chan, req, f.len) < 0)) {
        channel_lost();
        return;
    }
    switch (f.type) {
    case FWD_FRAME_REQUEST:
        serve_one(&f);
        break;
    case FWD_FRAME_SIGNALED:
        direct_signal_acked();
        break;
    case FWD_FRAME_HOLD: /* HELD goes from the main loop: never in the middle of a call */
        hold = 1;
        held_told = 0;
        direct_hold(1);
        break;
    case FWD_FRAME_RESUME:
        hold = 0;
        direct_hold(0);
        break;
    case FWD_FRAME_EXIT:
        end_like(f.id);
    case FWD_FRAME_STOPPED:
        stop_like(f.id);
        break;
    case FWD_FRAME_LEAVING:
        close_channels();
        await_order();
        break;
    default:
        channel_lost();
    }
}

static void serve(void)
{
    for (;;) {
        int wait_ms = -1;
        if (hold && !held_told && chan >= 0) {
            int64_t sent = direct_held_bytes(); /* -1: a direct channel's call goes on */
            if (sent < 0) {
                wait_ms = 5; /* poked again; look again soon */
            } else if (fwd_send_frame(chan, FWD_FRAME_HELD, (uint64_t)sent, NULL, 0) < 0) {
                channel_lost();
                continue;
            } else {
                held_told = 1;
            }
        }
        struct pollfd p[3] = {{chan, POLLIN, 0}, {sigpipe_r, POLLIN, 0}, {agent, POLLIN, 0}};
        if (poll(p, 3, wait_ms) < 0) {
            if (errno == EINTR)
                continue;
            lost("poll: %s", strerror(errno));
        }
        if (p[1].revents)
            pass_signals();
        if (p[2].revents) { /* an order while the copy runs: a new channel or an end */
            struct agent_reply reply;
            int fd[AGENT_FDS_MAX];
            if (agent_receive(&reply, fd) < 0)
                lost("the node agent is gone");
            if (strcmp(reply.op, MOSIX_DEPUTY_OP_HOME) == 0 && fd[0] >= 0 && fd[1] >= 0) {
                come_home_checked(fd); /* returns when it stays where it is */
                continue;
            }
            close_channels();
            if (strcmp(reply.op, MOSIX_DEPUTY_OP_CHANNEL) == 0 && fd[0] >= 0) {
                take_channels(fd);
                continue;
            }
            if (strcmp(reply.op, MOSIX_DEPUTY_OP_END) == 0)
                ended(&reply, fd, "ended by the node agent");
            lost("%s", reply.error[0] ? reply.error : "ended by the node agent");
        }
        if (p[0].revents && chan >= 0)
            first_channel_frame();
    }
}

/* ------------------------------------------------------------ start */

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: mosix-deputy -a AGENT_SOCKET -k TOKEN -r RESTORER [-x FD,...]\n");
    _exit(2);
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL, *token = NULL;
    int c;
    while ((c = getopt(argc, argv, "+a:k:r:x:")) != -1) {
        switch (c) {
        case 'a':
            socket_path = optarg;
            break;
        case 'k':
            token = optarg;
            break;
        case 'r':
            restorer = optarg;
            break;
        case 'x':
            cloexec_list = optarg;
            break;
        default:
            usage();
        }
    }
    if (!socket_path || !token || !restorer || optind != argc)
        usage();
    if (strcmp(cloexec_list, "-") != 0)
        restore_cloexec(cloexec_list);
    /* mosrun -X: the files went with the image; one that cannot be removed
     * stays here unseen (the process's are where it runs) */
    (void)deputy_empty_private();
    /* the copy has the timers now (the image carried them) */
    struct itimerval zero;
    memset(&zero, 0, sizeof(zero));
    for (int w = ITIMER_REAL; w <= ITIMER_PROF; w++)
        if (setitimer(w, &zero, NULL) < 0)
            lost("setitimer: %s", strerror(errno));
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
        lost("pipe2: %s", strerror(errno));
    sigpipe_r = move_high(pfd[0]);
    sigpipe_w = move_high(pfd[1]);
    catch_signals();
    const struct direct_hooks hooks = {own_fd_call, direct_fatal};
    direct_init(&hooks);
    agent_path = socket_path;
    agent_token = token;
    agent = move_high(connect_agent(socket_path, 0));
    agent_send(MOSIX_DEPUTY_OP_HELLO, 1, token);
    await_order();
    serve();
}
