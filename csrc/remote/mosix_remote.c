/* mosix_remote.c - the supervisor of a migrated process's remote copy.
 *
 * Usage (started by the node agent that accepted a migration):
 *   mosix-remote -c CHANFD [-d DIRECTFD]... -i IMAGEFD -m MODE [-p HOMEPID] -e MOSIX_EXEC
 *                -r MOSIX_RESTORE [-t] [-X DIR]... [-L MB] [-W MB]
 *
 *   CHANFD   the channel to the deputy at home (forward_wire.h), a TCP socket
 *   DIRECTFD a direct channel (repeated: one per thread that may call at once,
 *            FWD_DIRECT_MAX at most): handed to the restorer (-D); a copy with the
 *            preload shim's handler sends its calls to the deputy over them itself
 *            (the fast path: no notification, no supervisor in between)
 *   IMAGEFD  the image, streamed from the home node
 *   MODE     the unsupported-call mode (u, e, w) of the base filter here, and the
 *            default of the mode applied here (the copy's MOSIX_INHERIT decides first)
 *   HOMEPID  the process's pid at home (what it knows as its own: in messages)
 *   -t       take the time from this node (mosrun -t): time calls run here, and
 *            the restorer leaves the vDSO's clock functions alone (without -t
 *            it makes them system calls, which come here: vdso_time.h)
 *   -X DIR   a private temporary directory of the process (mosrun -X), made
 *            here before the copy starts; calls on it are served here
 *            (remote_private.h); the copy must then have no direct channel
 *   -L MB    their files together take at most MB MiB here (home's maximum: a
 *            copy never holds more than its home could take back)
 *   -W MB    the maximum away (the administrator's, for this node): when their
 *            files together exceed it, the process goes home ("home" once no
 *            private file is open: remote_private_limit.h)
 *
 * It forks the copy: mosix-exec installs the discipline (base filter and its
 * guard, as for any MOSIX process) and executes the restorer in forward mode,
 * which rebuilds the process from the image, installs the forward filter as
 * its last act and hands its listener over a socket pair.  From then on every
 * call the forward table places at home arrives here as a user notification:
 * the request is built from the copy's memory (forward.h), sent to the deputy,
 * and its reply written back before the call returns.  Python never sees it.
 * The calls the discipline does not support come here too (the base filter's
 * listener would be the guard's, but the kernel gives a process one): they
 * get what the guard gives them at home (remote_discipline.c), the message
 * written on the home standard error by a forwarded write.
 *
 * The agent talks to it through stdin/stdout, one line each:
 *   out: "ready PID" (restored, running), "failed REASON" (restore failed),
 *        "home" (the copy made a call that needs its home: fork, exec...),
 *        "quiet" (after "leave": no call in flight, and every call received
 *        and not answered made again: remote_restart.h), "exit STATUS" (the
 *        copy ended, the deputy told), "left" (the copy was taken away), "lost"
 *        (the channel broke: the copy is killed)
 *   in:  "leave" (finish the call in flight, take no more: it is being
 *        captured), "stay" (it stays after all), "kill" (end the copy)
 * With direct channels, "leave" also asks the deputy to hold them (HOLD), and
 * "quiet" waits until the copy has read every reply the deputy sent there
 * (HELD's count, over all of them, against these ends' TCP_INFO and unread
 * bytes: this process keeps a descriptor of each of the copy's sockets, and
 * never reads them).
 * Exit status: 0, or 1 when the copy could not be started. */
#include "forward.h"
#include "forward_table.h"
#include "forward_wire.h"
#include "mosix_names.h"
#include "remote_checkpoint.h"
#include "remote_discipline.h"
#include "remote_filemap.h"
#include "remote_mmsg.h"
#include "remote_private.h"
#include "remote_private_limit.h"
#include "remote_private_poll.h"
#include "remote_restart.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

static int direct[FWD_DIRECT_MAX], directs; /* the direct channels (-d) */
static int chan = -1, listener = -1, sigfd = -1, agent_in = STDIN_FILENO;
static pid_t copy, home_pid;
static enum mosix_mode default_mode;
static int time_here, leaving, quiet_told, home_asked, listener_hung_up;
static int hold_sent, held;   /* direct channel: HOLD sent, HELD received */
static uint64_t held_bytes;   /* what HELD says the deputy sent on it */
static uint64_t direct_before; /* bytes it had carried before (the agents' handshake) */
static unsigned char buf[FWD_FRAME_MAX_PAYLOAD];

/* The call in flight at home. */
static struct {
    int active;
    int own;       /* OWN_*: for whom the request is */
    int abandoned; /* the deputy did not execute it (leaving): it waits unanswered */
    uint64_t id, notif_id;
    long nr;
    uint64_t args[6];
    enum rd_action guarded; /* RD_WARN/RD_KILL: the call is the discipline's message */
} call;
static uint64_t next_id = 1;

enum {
    OWN_CALL,    /* the copy's call */
    OWN_FILEMAP, /* one of this process's own requests for the file map */
    OWN_SPLIT,   /* one message of the copy's sendmmsg or recvmmsg */
    OWN_POLL,    /* the home part of the copy's poll or select with private
                  * descriptors (remote_private_poll.h): a poll of our memory */
    OWN_CWD      /* home's getcwd after the copy's chdir (remote_private.h):
                  * the copy's call, done, is answered with cwd_result after it */
};
static long cwd_result;

/* The copy's mmap of a home file being made (remote_filemap.h), or its
 * sendmmsg/recvmmsg (remote_mmsg.h): at most one, as the copy waits in it. */
static struct filemap map;
static struct mmsg_split split;

/* ------------------------------------------------------------ the agent */

static void tell(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tell(const char *fmt, ...)
{
    char line[RC_LINE_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w;
    do
        w = write(STDOUT_FILENO, line, (size_t)n);
    while (w < 0 && errno == EINTR);
    /* the agent gone: it learns nothing more; the copy still runs its course */
}

_Noreturn static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn static void die(const char *fmt, ...)
{
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (copy > 0)
        (void)kill(copy, SIGKILL);
    tell(MOSIX_REMOTE_LINE_FAILED " %s", text);
    exit(1);
}

/* ------------------------------------------------------------ channel */

/* ------------------------------------------------------------ ends */

_Noreturn static void channel_lost(void)
{
    (void)kill(copy, SIGKILL);
    int st;
    while (waitpid(copy, &st, 0) < 0 && errno == EINTR)
        ;
    tell(MOSIX_REMOTE_LINE_LOST);
    exit(0);
}

/* The copy ended (its wait status st): tell, and end. */
_Noreturn static void copy_ended(int st)
{
    if (leaving) {
        tell(MOSIX_REMOTE_LINE_LEFT);
        exit(0);
    }
    if (fwd_send_frame(chan, FWD_FRAME_EXIT, (uint64_t)(unsigned)st, NULL, 0) < 0)
        tell(MOSIX_REMOTE_LINE_LOST);
    else
        tell(MOSIX_REMOTE_LINE_EXIT " %d", st);
    exit(0);
}

/* The copy changed state (SIGCHLD). */
static void reap(void)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    for (;;) {
        int st;
        pid_t r = waitpid(copy, &st, WNOHANG | WUNTRACED | WCONTINUED);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        if (WIFEXITED(st) || WIFSIGNALED(st))
            copy_ended(st);
        if (WIFSTOPPED(st) && fwd_send_frame(chan, FWD_FRAME_STOPPED, (uint64_t)WSTOPSIG(st), NULL, 0) < 0)
            channel_lost();
    }
}

/* ------------------------------------------------------------ notifications */

/* Answer notification id; 0 if its call is gone (its thread was killed). */
static int answer_sent(uint64_t id, long result, int cont)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof(resp));
    resp.id = id;
    if (cont)
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    else if (result < 0)
        resp.error = (int32_t)result;
    else
        resp.val = result;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0) {
        waiting_remove(id);
        return 1;
    }
    if (errno != ENOENT)
        die("SECCOMP_IOCTL_NOTIF_SEND: %s", strerror(errno));
    waiting_remove(id);
    return 0; /* ENOENT: the copy's thread is gone (killed) */
}

/* Answer notification id with -code, a restart code the kernel acts on
 * (remote_restart.h): the call is made again, or fails with EINTR where a
 * pending signal's handler says so. */
static void restart_call(uint64_t id, long code)
{
    pid_t tid = waiting_tid(id);
    if (tid <= 0)
        return; /* answered already */
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0) {
        waiting_remove(id); /* its thread is gone */
        return;
    }
    int st;
    int r = rr_restart(listener, id, tid, code, &st);
    if (r < 0)
        die("cannot make the call of thread %d again: %s", (int)tid, strerror(errno));
    if (r == 0 && tid == copy)
        copy_ended(st);
}

/* Leaving: every call received and not answered (given back by home, set
 * aside, or waiting for its home to take the process) is made again, so that
 * the capture finds each thread about to make it (its killable wait would
 * keep the capture from stopping the thread).  "stay" serves it as it comes. */
static void restart_waiting(void)
{
    while (waiting_count() > 0)
        restart_call(waiting_id(0), FWD_ERESTARTNOINTR);
}

static void answer(uint64_t id, long result, int cont)
{
    (void)answer_sent(id, result, cont);
}

static int answered(uint64_t id, long result)
{
    return answer_sent(id, result, 0);
}

/* The call needs the process at home: ask once; the call stays unanswered,
 * and leaving it is made again (restart_waiting): at home, natively. */
static void bring_home(void)
{
    if (!home_asked) {
        tell(MOSIX_REMOTE_LINE_HOME);
        home_asked = 1;
    }
}

/* A call the guard would answer at home (remote_discipline.h).  Returns 0 when
 * it is not one.  The message goes home as a forwarded write, in flight like
 * any call; guarded_reply() finishes it. */
static int guarded_call(const struct seccomp_notif *n)
{
    long result;
    enum rd_action a = rd_decide(&n->data, (pid_t)n->pid, home_pid, default_mode, &result);
    if (a == RD_NOT_GUARDED)
        return 0;
    if (a == RD_HOME) {
        bring_home();
        return 1;
    }
    if (a == RD_ANSWER) {
        answer(n->id, result, 0);
        return 1;
    }
    uint64_t id = n->id;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) < 0)
        return 1; /* gone meanwhile: nothing to say, no one to kill */
    long len = rd_message_request(a, (pid_t)n->pid, home_pid, n->data.nr, buf, sizeof(buf));
    if (len < 0)
        die("the unsupported-call message: %s", strerror((int)-len));
    call.active = 1;
    call.id = next_id++;
    call.notif_id = n->id;
    call.nr = n->data.nr;
    memset(call.args, 0, sizeof(call.args));
    call.own = OWN_CALL;
    call.abandoned = 0;
    call.guarded = a;
    if (fwd_send_frame(chan, FWD_FRAME_REQUEST, call.id, buf, (size_t)len) < 0)
        channel_lost();
    return 1;
}

/* The message is written at home: -w, the call fails with ENOSYS; -u, the copy
 * is killed (its end goes home as an EXIT frame: the deputy dies the same way). */
static void guarded_reply(void)
{
    enum rd_action a = call.guarded;
    call.guarded = RD_NOT_GUARDED;
    if (a == RD_KILL) {
        if (kill(copy, SIGKILL) < 0 && errno != ESRCH)
            die("kill: %s", strerror(errno));
        return;
    }
    answer(call.notif_id, -ENOSYS, 0);
}

/* Bytes these ends of the direct channels have received, all together (TCP_INFO). */
static uint64_t direct_received(void)
{
    uint64_t sum = 0;
    for (int k = 0; k < directs; k++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        memset(&ti, 0, sizeof(ti));
        if (getsockopt(direct[k], IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
            die("the direct channel: %s", strerror(errno));
        if (len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
            die("the direct channel: TCP_INFO without tcpi_bytes_received");
        sum += ti.tcpi_bytes_received;
    }
    return sum;
}

/* Every byte the deputy sent on the direct channels has arrived and the copy
 * has read it (no reply is left unread in its sockets).  Each channel received
 * at most what the deputy sent on it, so the sums are equal only when each is. */
static int direct_drained(void)
{
    if (directs == 0)
        return 1;
    if (!held)
        return 0;
    for (int k = 0; k < directs; k++) {
        int unread = 0;
        if (ioctl(direct[k], SIOCINQ, &unread) < 0)
            die("the direct channel: %s", strerror(errno));
        if (unread != 0)
            return 0;
    }
    return direct_received() - direct_before == held_bytes;
}

static void maybe_quiet(void)
{
    if (leaving && !call.active && !quiet_told && direct_drained()) {
        restart_waiting();
        tell(MOSIX_REMOTE_LINE_QUIET);
        quiet_told = 1;
    }
}

/* Send the request in buf[0..len) for notification notif_id: call (nr, args),
 * for whom own says. */
static void send_request(uint64_t notif_id, long nr, const uint64_t args[6], size_t len, int own)
{
    call.active = 1;
    call.own = own;
    call.abandoned = 0;
    call.id = next_id++;
    call.notif_id = notif_id;
    call.nr = nr;
    memcpy(call.args, args, sizeof(call.args));
    if (fwd_send_frame(chan, FWD_FRAME_REQUEST, call.id, buf, len) < 0)
        channel_lost();
}

/* ------------------------------------------------------------ file maps */

static uint64_t map_id, map_args[6]; /* the copy's mmap being served */
static int map_waiting;               /* set aside while leaving: "stay" takes it up */

/* The file map's next request, or its end: the copy's mmap goes on, on the
 * memory file now at its descriptor number, or fails. */
static void filemap_step(void)
{
    long len = filemap_next(&map, buf, sizeof(buf));
    if (len > 0) {
        send_request(map_id, map.nr, map.args, (size_t)len, OWN_FILEMAP);
        return;
    }
    long result = len < 0 ? len : filemap_install(&map, listener, map_id);
    filemap_end(&map);
    if (result < 0)
        answer(map_id, result, 0);
    else
        answer(map_id, 0, 1);
}

static void filemap_start(uint64_t id, const uint64_t args[6])
{
    long r = filemap_begin(&map, args);
    if (r < 0) {
        answer(id, r, 0);
        return;
    }
    map_id = id;
    memcpy(map_args, args, sizeof(map_args));
    filemap_step();
}

/* The deputy answered one of the file map's requests. */
static void filemap_replied(size_t len)
{
    if (leaving || ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &map_id) < 0) {
        /* its thread was killed, or it is leaving (the call is made again
         * where it goes; "stay" takes it up) */
        filemap_end(&map);
        map_waiting = leaving;
        return;
    }
    filemap_reply(&map, buf, len);
    filemap_step();
}

/* "stay": a file map set aside for leaving goes on. */
static void filemap_resume(void)
{
    if (!map_waiting)
        return;
    map_waiting = 0;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &map_id) == 0)
        filemap_start(map_id, map_args);
}

/* ------------------------------------------------------------ sendmmsg, recvmmsg */

/* The split call's next message, or its end. */
static void split_step(uint64_t id)
{
    long len = mmsg_next(&split, copy, buf, sizeof(buf));
    if (len > 0)
        send_request(id, split.nr, split.args, (size_t)len, OWN_SPLIT);
    else
        answer(id, split.result, 0);
}

/* The deputy answered one message. */
static void split_replied(size_t len)
{
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &call.notif_id) < 0)
        return; /* its thread was killed */
    mmsg_reply(&split, copy, buf, len);
    if (leaving && !split.ended) { /* no more messages: the part done, or again elsewhere */
        if (mmsg_cut(&split) >= 0)
            answer(call.notif_id, mmsg_cut(&split), 0);
        return;
    }
    split_step(call.notif_id);
}

static void resend_abandoned(void);

/* Whether the copy's thread tid has a signal pending (its own or the
 * process's) that it does not block: it takes it as its call returns (a
 * handler, a stop, its end, or nothing if ignored). */
static int copy_takes_signal(pid_t tid)
{
    char path[64], text[8192];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)copy, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1; /* gone: its call is gone too */
    ssize_t n;
    do
        n = read(fd, text, sizeof(text) - 1);
    while (n < 0 && errno == EINTR);
    if (close(fd) < 0)
        die("close: %s", strerror(errno));
    if (n <= 0)
        return 1;
    text[n] = '\0';
    uint64_t mask[3] = {0, 0, 0};
    const char *names[3] = {"\nSigPnd:", "\nShdPnd:", "\nSigBlk:"};
    for (int i = 0; i < 3; i++) {
        const char *at = strstr(text, names[i]);
        if (!at)
            die("%s: no %s", path, names[i] + 1);
        mask[i] = strtoull(at + strlen(names[i]), NULL, 16);
    }
    return ((mask[0] | mask[1]) & ~mask[2]) != 0;
}

/* The deputy's call ended with EINTR: a signal for the home pid interrupted
 * it, and the supervisor has sent it to the copy (kill() queued it before this
 * reply was read).  If the calling thread takes it (pending for it or the
 * process, not blocked by it), the kernel decides as it would have for the
 * program: the call "returns" ERESTARTSYS (ERESTARTNOHAND for the
 * calls no handler restarts), so a handler with SA_RESTART, a stop or no
 * handler makes it again and a handler without SA_RESTART ends it with EINTR.
 * A signal the copy ignores or blocks would never have interrupted it: the
 * call goes home again (or, leaving, is made again where the process goes). */
static void interrupted_at_home(void)
{
    pid_t tid = waiting_tid(call.notif_id);
    if (tid > 0 && copy_takes_signal(tid)) {
        restart_call(call.notif_id,
                     fwd_restarts_after_handler(call.nr) ? FWD_ERESTARTSYS : FWD_ERESTARTNOHAND);
        return;
    }
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &call.notif_id) < 0)
        return; /* its thread was killed */
    call.abandoned = 1;
    if (!leaving)
        resend_abandoned();
}

static void serve_notification(const struct seccomp_notif *np);

static void notification(void)
{
    struct seccomp_notif n;
    memset(&n, 0, sizeof(n));
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0) {
        if (errno == EINTR || errno == ENOENT)
            return;
        die("SECCOMP_IOCTL_NOTIF_RECV: %s", strerror(errno));
    }
    waiting_add(n.id, (pid_t)n.pid); /* its thread now waits killable until answered */
    serve_notification(&n);
}

/* The copy's own checkpoint call: its home serves it (remote_checkpoint.h). */
static void own_checkpoint(const struct seccomp_notif *n)
{
    static char line[RC_LINE_MAX];
    long result = 0;
    if (agent_in < 0) { /* the agent is gone: no one would answer (the guard's ECANCELED) */
        answer(n->id, -ECANCELED, 0);
        return;
    }
    switch (rc_call(n, line, sizeof(line), &result)) {
    case RC_ANSWER:
        answer(n->id, result, 0);
        return;
    case RC_ASK:
        tell("%s", line);
        return;
    case RC_WAIT:
        return;
    }
}

/* Home's answer to it. */
static void own_checkpoint_answered(const char *text)
{
    uint64_t id;
    long result;
    if (rc_answer(text, &id, &result) && !answered(id, result))
        rc_keep(result); /* made again (it left): for the call made again */
}

/* Whether tid is a thread of the copy (its /proc/COPY/task entry). */
static int copy_thread(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)copy, (int)tid);
    return tid > 0 && access(path, F_OK) == 0;
}

/* The calls that name one of the copy's threads (glibc's pthread_kill and
 * raise: tgkill(getpid(), tid, sig) with the tid it cached or gettid gave).
 * The main thread answers to the home pid, as before (home serves it); any
 * other thread is here, under this node's id: gettid tells it its own, and a
 * tgkill or tkill for it, the process named by its home pid, is sent here
 * (its sender is then this supervisor).  1 when answered. */
static int thread_call(const struct seccomp_notif *n)
{
    long nr = n->data.nr;
    const __u64 *a = n->data.args;
    if (nr == SYS_gettid && (pid_t)n->pid != copy) {
        answer(n->id, (long)n->pid, 0);
        return 1;
    }
    pid_t tid;
    int sig;
    if (nr == SYS_tgkill && (pid_t)a[0] == home_pid) {
        tid = (pid_t)a[1];
        sig = (int)a[2];
    } else if (nr == SYS_tkill) {
        tid = (pid_t)a[0];
        sig = (int)a[1];
    } else {
        return 0;
    }
    if (tid == home_pid || tid == copy || !copy_thread(tid))
        return 0; /* the main thread, or another process: home decides */
    long r = syscall(SYS_tgkill, copy, tid, sig);
    answer(n->id, r < 0 ? -errno : 0, 0);
    return 1;
}

static void serve_notification(const struct seccomp_notif *np)
{
    struct seccomp_notif n = *np;
    long nr = n.data.nr;
    uint64_t args[6];
    for (int i = 0; i < 6; i++)
        args[i] = n.data.args[i];
    if (rc_is_checkpoint_call(nr)) {
        own_checkpoint(&n);
        return;
    }
    if (guarded_call(&n) || thread_call(&n))
        return;
    long result = 0;
    switch (rp_serve(listener, &n, buf, sizeof(buf), &result)) {
    case RP_NOT_PRIVATE:
        break;
    case RP_ANSWER:
        answer(n.id, result, 0);
        return;
    case RP_CONTINUE:
        answer(n.id, 0, 1);
        return;
    case RP_ANSWERED:
        return;
    case RP_SEND_POLL:
        send_request(n.id, SYS_poll, rpp_args(), (size_t)result, OWN_POLL);
        return;
    }
    switch (fwd_placement(nr, args)) {
    case FWD_LOCAL:
        answer(n.id, 0, 1);
        return;
    case FWD_TIME:
        if (time_here) {
            answer(n.id, 0, 1);
            return;
        }
        break;
    case FWD_BRING_HOME:
        bring_home();
        return;
    case FWD_UNFORWARDABLE:
        answer(n.id, fwd_request(n.pid, nr, args, buf, sizeof(buf)), 0); /* its errno */
        return;
    case FWD_FILE_MAP:
        filemap_start(n.id, args);
        return;
    case FWD_SPLIT:
        mmsg_begin(&split, nr, args);
        split_step(n.id);
        return;
    case FWD_HOME:
        break;
    }
    long len = fwd_request(n.pid, nr, args, buf, sizeof(buf));
    if (len < 0) {
        answer(n.id, len, 0);
        return;
    }
    send_request(n.id, nr, args, (size_t)len, OWN_CALL);
}

/* The copy's call that the deputy gave back while it was leaving (FWD_RET_AGAIN)
 * goes again, as it stays after all; before "quiet" it was made again
 * (restart_waiting), and then it comes again by itself. */
static void resend_abandoned(void)
{
    if (!call.abandoned)
        return;
    call.abandoned = 0;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &call.notif_id) < 0)
        return; /* made again meanwhile (or its thread killed): it comes again */
    long len = fwd_request(call.own == OWN_POLL ? getpid() : copy, call.nr, call.args, buf,
                           sizeof(buf));
    if (len < 0)
        answer(call.notif_id, len, 0);
    else
        send_request(call.notif_id, call.nr, call.args, (size_t)len, call.own);
}

/* A frame from the deputy. */
static void from_home(void)
{
    struct fwd_frame f;
    if (fwd_read_full(chan, &f, sizeof(f)) < 0 || f.len > sizeof(buf) ||
        (f.len && fwd_read_full(chan, buf, f.len) < 0)) {
        if (!leaving)
            channel_lost();
        /* leaving: the deputy became the restorer of the image being captured
         * (its end of the channel closed on exec); the capture decides */
        if (close(chan) < 0)
            die("close: %s", strerror(errno));
        chan = -1;
        return;
    }
    switch (f.type) {
    case FWD_FRAME_REPLY:
        if (!call.active || f.id != call.id)
            return; /* its call was interrupted: the copy issues it again */
        call.active = 0;
        if (call.own == OWN_CWD) { /* whatever home said: the chdir is done */
            rp_cwd_replied(buf, f.len);
            answer(call.notif_id, cwd_result, 0);
            maybe_quiet();
            return;
        }
        if (call.guarded != RD_NOT_GUARDED) { /* the message's write: done, or given back */
            guarded_reply();
            maybe_quiet();
            return;
        }
        if (fwd_reply_ret(buf, f.len) == FWD_RET_AGAIN) { /* blocked at home, and leaving */
            if (call.own == OWN_SPLIT && mmsg_cut(&split) >= 0) {
                answer(call.notif_id, mmsg_cut(&split), 0); /* a part was done */
            } else if (call.own == OWN_FILEMAP) {
                filemap_end(&map);
                map_waiting = 1;
                if (!leaving)
                    filemap_resume();
            } else {
                call.abandoned = 1;
                if (!leaving)
                    resend_abandoned();
            }
            maybe_quiet();
            return;
        }
        if (call.own == OWN_SPLIT) {
            split_replied(f.len);
            maybe_quiet();
            return;
        }
        if (call.own == OWN_FILEMAP) {
            filemap_replied(f.len);
            maybe_quiet();
            return;
        }
        if (fwd_reply_ret(buf, f.len) == -EINTR) {
            interrupted_at_home();
            maybe_quiet();
            return;
        }
        /* its thread waits killable since the notification was received: the
         * reply reaches it (NOTIF_SEND fails only if it was killed meanwhile) */
        if (call.own == OWN_POLL)
            answer(call.notif_id, rpp_replied(copy, buf, f.len), 0);
        else {
            long r = fwd_apply(copy, call.nr, call.args, buf, f.len);
            long len;
            /* leaving: the restorer where it goes enters a private directory */
            if (rp_home_replied(call.nr, r) && !leaving &&
                (len = rp_cwd_request(buf, sizeof(buf))) > 0) {
                cwd_result = r;
                send_request(call.notif_id, SYS_getcwd, rp_cwd_args(), (size_t)len, OWN_CWD);
                return;
            }
            answer(call.notif_id, r, 0);
        }
        maybe_quiet();
        return;
    case FWD_FRAME_HELD:
        held = 1;
        held_bytes = f.id;
        maybe_quiet();
        return;
    case FWD_FRAME_SIGNAL:
        if (f.id >= 1 && f.id <= 64 && kill(copy, (int)f.id) < 0 && errno != ESRCH)
            die("kill %d: %s", (int)copy, strerror(errno));
        /* delivered (pending, if the copy blocks it): a reply on the direct channel may go */
        if (fwd_send_frame(chan, FWD_FRAME_SIGNALED, f.id, NULL, 0) < 0)
            channel_lost();
        return;
    default:
        channel_lost();
    }
}

/* A line from the agent. */
static void from_agent(void)
{
    char line[64];
    ssize_t n = read(STDIN_FILENO, line, sizeof(line) - 1);
    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) { /* the agent is gone: the copy goes on; no more orders */
        agent_in = -1;
        return;
    }
    line[n] = '\0';
    for (char *l = strtok(line, "\n"); l; l = strtok(NULL, "\n")) {
        if (strcmp(l, MOSIX_REMOTE_LINE_LEAVE) == 0) {
            leaving = 1;
            quiet_told = 0;
            /* HOLD also interrupts a call blocked at home: the deputy gives it back */
            if (!hold_sent && chan >= 0) {
                if (fwd_send_frame(chan, FWD_FRAME_HOLD, 0, NULL, 0) < 0)
                    channel_lost();
                hold_sent = 1;
                held = 0;
            }
            maybe_quiet();
        } else if (strcmp(l, MOSIX_REMOTE_LINE_STAY) == 0) {
            leaving = 0;
            home_asked = 0;
            if (chan < 0) /* its deputy is gone: nothing serves it any more */
                channel_lost();
            if (hold_sent) {
                if (fwd_send_frame(chan, FWD_FRAME_RESUME, 0, NULL, 0) < 0)
                    channel_lost();
                hold_sent = held = 0;
            }
            filemap_resume();
            resend_abandoned();
        } else if (strncmp(l, MOSIX_REMOTE_LINE_ANSWER " ", sizeof(MOSIX_REMOTE_LINE_ANSWER)) == 0) {
            own_checkpoint_answered(l + sizeof(MOSIX_REMOTE_LINE_ANSWER));
        } else if (strcmp(l, MOSIX_REMOTE_LINE_KILL) == 0 && kill(copy, SIGKILL) < 0 && errno != ESRCH) {
            die("kill: %s", strerror(errno));
        }
    }
}

/* ------------------------------------------------------------ start */

/* The restorer's complaint, if it wrote one. */
static void read_error(int fd, char *text, size_t cap)
{
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t n = read(fd, text + got, cap - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    while (got && (text[got - 1] == '\n' || text[got - 1] == '\0'))
        got--;
    text[got] = '\0';
    for (size_t i = 0; i < got; i++)
        if (text[i] == '\n')
            text[i] = ' ';
}

/* mosrun -X: the private directories, a tmpfs each in a mount namespace that
 * this process and the copy share (private_dirs.c, as the launcher makes them
 * at home): the restorer fills them from the image, calls on them are served
 * here (remote_private.h), and they go away with the copy and this process. */
static struct private_dirs private_dirs;

static unsigned long away_limit_mb; /* -W */
static int limit_watch = -1;        /* remote_private_limit.h */

static void enter_private_dirs(void)
{
    const char *what = "";
    int err = private_dirs_enter(&private_dirs, &what);
    if (err < 0)
        die("-X %s: %s", what, strerror(-err));
    rp_init(&private_dirs);
    limit_watch = rpl_start(&private_dirs, away_limit_mb, &what);
    if (limit_watch < -1)
        die("-W %s: %s", what, strerror(-limit_watch));
}

/* Over the maximum away: home, once no private file is open (the move would be
 * refused); the close of the last one is an event that brings us here again. */
static void private_limit_check(void)
{
    if (limit_watch < 0)
        return;
    int err = rpl_events();
    int over = err < 0 ? err : rpl_over();
    if (over < 0)
        die("the private directories' size: %s", strerror(-over));
    if (over && !leaving && !rp_any_open())
        bring_home();
}

static void start_copy(int imagefd, const char *mode, const char *exec_path,
                       const char *restore_path)
{
    int sp[2], errp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        die("socketpair: %s", strerror(errno));
    if (pipe2(errp, O_CLOEXEC) < 0)
        die("pipe2: %s", strerror(errno));
    copy = fork();
    if (copy < 0)
        die("fork: %s", strerror(errno));
    if (copy == 0) {
        char spt[16], imt[16], ert[16], dit[FWD_DIRECT_MAX][16], hpt[16];
        snprintf(spt, sizeof(spt), "%d", sp[1]);
        snprintf(imt, sizeof(imt), "%d", imagefd);
        snprintf(ert, sizeof(ert), "%d", errp[1]);
        snprintf(hpt, sizeof(hpt), "%d", (int)home_pid);
        if (fcntl(sp[1], F_SETFD, 0) < 0 || fcntl(imagefd, F_SETFD, 0) < 0 ||
            fcntl(errp[1], F_SETFD, 0) < 0)
            _exit(125);
        for (int k = 0; k < directs; k++) {
            snprintf(dit[k], sizeof(dit[k]), "%d", direct[k]);
            if (fcntl(direct[k], F_SETFD, 0) < 0)
                _exit(125);
        }
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0)
            _exit(125);
        /* a process group of its own in this process's session: not orphaned, so
         * SIGTSTP, SIGTTIN and SIGTTOU stop the copy as they stop it at home */
        if (setpgid(0, 0) < 0)
            _exit(125);
        sigset_t none;
        if (sigemptyset(&none) < 0 || sigprocmask(SIG_SETMASK, &none, NULL) < 0)
            _exit(125);
        char *argv[24 + 2 * FWD_DIRECT_MAX];
        int a = 0;
        const char *head[] = {exec_path, "-r", "-m", mode, "-p", "mosrun", "--",
                              restore_path, restore_path, "-F", spt, "-e", ert};
        for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
            argv[a++] = (char *)head[i];
        for (int k = 0; k < directs; k++) {
            argv[a++] = "-D";
            argv[a++] = dit[k];
        }
        if (time_here) /* the one decision: no patched vDSO, no forwarded clock call */
            argv[a++] = "-t";
        if (home_pid > 0) { /* the main thread's id in the thread id map (restore_tids.c) */
            argv[a++] = "-P";
            argv[a++] = hpt;
        }
        argv[a++] = imt;
        argv[a] = NULL;
        extern char **environ;
        execve(exec_path, argv, environ);
        _exit(126);
    }
    if (close(sp[1]) < 0 || close(errp[1]) < 0 || close(imagefd) < 0)
        die("close: %s", strerror(errno));
    /* the direct channels stay open here (close-on-exec, never read): to see what the
     * copy read */
    listener = mosix_receive_fd(sp[0]);
    if (listener < 0) {
        char why[300];
        read_error(errp[0], why, sizeof(why));
        int st;
        while (waitpid(copy, &st, 0) < 0 && errno == EINTR)
            ;
        copy = 0;
        die("%s", why[0] ? why : "the restorer ended before the process resumed");
    }
    if (close(sp[0]) < 0 || close(errp[0]) < 0)
        die("close: %s", strerror(errno));
    /* faster where supported (6.6+); the flags go by value, not through a pointer */
    (void)ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
}

_Noreturn static void usage(void)
{
    fprintf(stderr, "usage: mosix-remote -c CHANFD [-d DIRECTFD]... -i IMAGEFD -m u|e|w "
                    "[-p HOMEPID] -e MOSIX_EXEC -r MOSIX_RESTORE [-t] [-X DIR]... [-L MB] "
                    "[-W MB]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int imagefd = -1, c;
    const char *mode = NULL, *exec_path = NULL, *restore_path = NULL;
    while ((c = getopt(argc, argv, "+c:d:i:m:p:e:r:tX:L:W:")) != -1) {
        switch (c) {
        case 'c':
            chan = atoi(optarg);
            break;
        case 'd':
            if (directs >= FWD_DIRECT_MAX)
                usage();
            direct[directs++] = atoi(optarg);
            break;
        case 'i':
            imagefd = atoi(optarg);
            break;
        case 'm':
            mode = optarg;
            break;
        case 'p':
            home_pid = (pid_t)atoi(optarg);
            break;
        case 'e':
            exec_path = optarg;
            break;
        case 'r':
            restore_path = optarg;
            break;
        case 't':
            time_here = 1;
            break;
        case 'X':
            if (optarg[0] != '/' || private_dirs_add(&private_dirs, optarg) != 0)
                usage();
            break;
        case 'L':
            if (private_dirs_limit(&private_dirs, optarg) != 0)
                usage();
            break;
        case 'W': {
            struct private_dirs parsed = {.count = 0};
            if (private_dirs_limit(&parsed, optarg) != 0)
                usage();
            away_limit_mb = parsed.limit_mb;
            break;
        }
        default:
            usage();
        }
    }
    if (chan < 0 || imagefd < 0 || !mode || !exec_path || !restore_path || optind != argc ||
        rd_mode_of_letter(mode) < 0 || (private_dirs.count > 0 && directs > 0))
        usage();
    default_mode = (enum mosix_mode)rd_mode_of_letter(mode);
    if (fcntl(chan, F_SETFD, FD_CLOEXEC) < 0 || fcntl(imagefd, F_GETFD) < 0)
        die("bad descriptors: %s", strerror(errno));
    for (int k = 0; k < directs; k++)
        if (fcntl(direct[k], F_SETFD, FD_CLOEXEC) < 0)
            die("bad descriptors: %s", strerror(errno));
    sigset_t chld;
    if (sigemptyset(&chld) < 0 || sigaddset(&chld, SIGCHLD) < 0 ||
        sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
        die("sigprocmask: %s", strerror(errno));
    sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0)
        die("signalfd: %s", strerror(errno));
    struct sigaction ign = {.sa_handler = SIG_IGN};
    if (sigaction(SIGPIPE, &ign, NULL) < 0)
        die("sigaction: %s", strerror(errno));
    if (directs > 0) /* the deputy sends nothing before the copy asks */
        direct_before = direct_received();
    enter_private_dirs();
    start_copy(imagefd, mode, exec_path, restore_path);
    if (home_pid <= 0) /* not told: the copy's own */
        home_pid = copy;
    tell(MOSIX_REMOTE_LINE_READY " %d", (int)copy);
    /* the restorer's writes: not a reason to leave at once (the move that brought it
     * is still finishing at home); one that came with more than this node takes goes
     * home at its next event (a private file closed) */
    int drained = limit_watch >= 0 ? rpl_events() : 0;
    if (drained < 0)
        die("the private directories' watch: %s", strerror(-drained));
    for (;;) {
        /* leaving: no event says the copy has read its last reply; look again soon */
        int wait_ms = leaving && held && !quiet_told ? 1 : -1;
        struct pollfd p[5] = {
            {sigfd, POLLIN, 0},
            {chan, POLLIN, 0},
            {agent_in, POLLIN, 0},
            {(call.active || leaving || listener_hung_up) ? -1 : listener,
             POLLIN, 0},
            {limit_watch, POLLIN, 0},
        };
        int ready = poll(p, 5, wait_ms);
        if (ready == 0)
            maybe_quiet();
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        if (p[0].revents)
            reap();
        if (p[1].revents)
            from_home();
        if (p[2].revents)
            from_agent();
        /* not after a "leave" read just above: a notification received now would
         * not be made again (quiet may be told already), and the copy would wait in
         * it, killable only, while it is captured: the capture would never end */
        if ((p[3].revents & POLLIN) && !leaving)
            notification();
        else if (p[3].revents & ~POLLIN) /* the copy is gone (exiting): SIGCHLD follows */
            listener_hung_up = 1;
        if (p[4].revents)
            private_limit_check();
    }
}
