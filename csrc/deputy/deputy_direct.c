/* deputy_direct.c - the direct channels' servers: a thread per channel.
 *
 * A copy with the preload shim's handler sends its forwarded calls over the
 * direct channels, one call at a time on each (a thread of the copy takes a
 * free channel for a whole call: shim_forward.c).  Here each channel has a
 * thread of its own that reads a request, executes it natively at home and
 * replies, so a call that blocks at home (a read of the terminal or a pipe)
 * holds only its own channel.  The main thread keeps the first channel
 * (signals, STOPPED, EXIT, HOLD/RESUME, the supervisor's requests) and the
 * agent.
 *
 * Signals: the servers block every signal but SIGIO, the main thread's poke
 * (sent with tgkill: SI_TKILL from this process); the program's signals go to
 * the main thread, which passes them on and pokes the calls in progress: such
 * a call returns EINTR (it did nothing), and the reply says so once the
 * supervisor has delivered the signal (SIGNALED), so the copy's shim decides
 * as the kernel would (restart or EINTR).  A call poked for HOLD is answered
 * FWD_RET_AGAIN (made again where the process goes); for anything else it is
 * made again.  A poke can arrive just before the call blocks: while held, the
 * main thread pokes again until every server waits (direct_held_bytes).
 *
 * One mutex guards the shared state (hold, the generation of the channels,
 * signals not yet acknowledged, bytes sent, each server's state); one
 * condition variable announces every change. */
#include "deputy_direct.h"

#include "deputy_ids.h"
#include "deputy_resume.h"
#include "forward.h"
#include "forward_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SERVERS_MAX 16 /* channels of this generation and the one before, at most */
#define DRAIN_POKE_NS 5000000L /* direct_drain pokes the servers left this often */

enum server_state {
    SERVER_FREE,    /* no thread */
    SERVER_WAITING, /* held, or between channels: reads nothing */
    SERVER_READING, /* waiting for a request, or reading one */
    SERVER_CALLING, /* executing a call or waiting to reply */
};

struct server {
    enum server_state state;
    int fd;
    unsigned long gen;       /* the channels' generation it serves */
    pid_t tid;               /* for the pokes */
    unsigned long interrupts; /* the program's signals that poked its call */
    unsigned char *req, *rep; /* FWD_FRAME_MAX_PAYLOAD each */
};

__thread volatile sig_atomic_t direct_poked;

static struct direct_hooks hooks;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct server servers[SERVERS_MAX];
static unsigned long generation; /* bumped when channels come or go */
static int held;
static unsigned long unacked; /* SIGNAL frames the supervisor has not acknowledged */
static uint64_t sent;         /* bytes sent on this generation's channels */

static void locked(void)
{
    int e = pthread_mutex_lock(&mu);
    if (e)
        hooks.fatal("pthread_mutex_lock", e);
}

static void unlocked(void)
{
    int e = pthread_mutex_unlock(&mu);
    if (e)
        hooks.fatal("pthread_mutex_unlock", e);
}

static void announce(void)
{
    int e = pthread_cond_broadcast(&changed);
    if (e)
        hooks.fatal("pthread_cond_broadcast", e);
}

static void await_change(void)
{
    int e = pthread_cond_wait(&changed, &mu);
    if (e)
        hooks.fatal("pthread_cond_wait", e);
}

/* Interrupt server s's call or read (mutex held); ESRCH: it just ended. */
static void poke(const struct server *s)
{
    if (s->tid > 0 && syscall(SYS_tgkill, getpid(), s->tid, SIGIO) < 0 && errno != ESRCH)
        hooks.fatal("tgkill", errno);
}

void direct_init(const struct direct_hooks *h)
{
    hooks = *h;
}

/* ------------------------------------------------------------ a server */

static size_t reply_result(unsigned char *rep, int64_t ret)
{
    struct fwd_reply head = {FWD_REPLY_MAGIC, 0, ret, 0, 0};
    memcpy(rep, &head, sizeof(head));
    return sizeof(head);
}

/* Still this generation's and not held (mutex held). */
static int current(const struct server *s)
{
    return s->gen == generation;
}

/* Execute the request in s->req; the reply's length in s->rep. */
static size_t execute(struct server *s, size_t len)
{
    struct fwd_request head;
    int parsed = len >= sizeof(head);
    if (parsed)
        memcpy(&head, s->req, sizeof(head));
    parsed = parsed && head.magic == FWD_REQUEST_MAGIC;
    int64_t ret;
    if (parsed && hooks.own_fd_call((long)head.nr, head.args, &ret))
        return reply_result(s->rep, ret);
    size_t ids = deputy_id_call(s->req, len, s->rep, FWD_FRAME_MAX_PAYLOAD);
    if (ids)
        return ids; /* for every thread of the deputy */
    locked();
    unsigned long seen = s->interrupts;
    unlocked();
    for (;;) {
        direct_poked = 0;
        size_t n = fwd_execute(s->req, len, s->rep, FWD_FRAME_MAX_PAYLOAD);
        int64_t r = fwd_reply_ret(s->rep, n);
        if (r != -EINTR || !direct_poked) {
            if (parsed) {
                locked();
                deputy_note_write((long)head.nr, head.args, r);
                unlocked();
            }
            return n;
        }
        locked();
        int again = current(s) && !held && s->interrupts == seen;
        int leaving = held || !current(s);
        unlocked();
        if (leaving)
            return reply_result(s->rep, FWD_RET_AGAIN);
        if (!again)
            return n; /* the program's signal: EINTR, as at home */
    }
}

/* Wait until the request's head and payload are read (0), the channel ended
 * (-1), or the server is poked while no request has begun (1). */
static int read_request(struct server *s, struct fwd_frame *f)
{
    struct pollfd p = {s->fd, POLLIN, 0};
    direct_poked = 0;
    if (poll(&p, 1, -1) < 0)
        return errno == EINTR ? 1 : -1;
    if (p.revents & POLLNVAL)
        return 1; /* moved out of a program's way meanwhile: look again */
    if (fwd_read_full(s->fd, f, sizeof(*f)) < 0 || f->type != FWD_FRAME_REQUEST ||
        f->len > FWD_FRAME_MAX_PAYLOAD || (f->len && fwd_read_full(s->fd, s->req, f->len) < 0))
        return -1;
    return 0;
}

static void serve_channel(struct server *s)
{
    for (;;) {
        locked();
        if (current(s) && held) {
            /* announced once: a server that announced again on each wake would
             * wake the others, which would announce again, a storm of wakes
             * between the servers for as long as they are held (one CPU each,
             * and the machine's others starved: session 16's home-coming stall) */
            s->state = SERVER_WAITING;
            announce();
            while (current(s) && held)
                await_change();
        }
        if (!current(s)) {
            unlocked();
            return;
        }
        s->state = SERVER_READING;
        unlocked();
        struct fwd_frame f;
        int got = read_request(s, &f);
        if (got < 0)
            return; /* the copy left or ended: the first channel tells */
        if (got > 0)
            continue;
        locked();
        s->state = SERVER_CALLING;
        unlocked();
        size_t n = execute(s, f.len);
        locked();
        while (unacked > 0 && current(s))
            await_change(); /* the copy gets the signals first, then the result */
        int stale = !current(s);
        unlocked();
        if (stale)
            return; /* the copy left meanwhile: not its channel any more */
        if (fwd_send_frame(s->fd, FWD_FRAME_REPLY, f.id, s->rep, n) < 0)
            return;
        locked();
        sent += sizeof(struct fwd_frame) + n;
        unlocked();
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    sigset_t all;
    if (sigfillset(&all) < 0 || sigdelset(&all, SIGIO) < 0)
        hooks.fatal("sigfillset", errno);
    int e = pthread_sigmask(SIG_SETMASK, &all, NULL);
    if (e)
        hooks.fatal("pthread_sigmask", e);
    locked();
    s->tid = (pid_t)syscall(SYS_gettid);
    announce();
    unlocked();
    serve_channel(s);
    locked();
    if (s->fd >= 0 && close(s->fd) < 0)
        hooks.fatal("close", errno);
    free(s->req);
    free(s->rep);
    memset(s, 0, sizeof(*s));
    s->state = SERVER_FREE;
    s->fd = -1;
    announce();
    unlocked();
    return NULL;
}

/* ------------------------------------------------------------ the main thread */

void direct_start(const int *fds, int n)
{
    locked();
    generation++;
    held = 0;
    unacked = 0;
    sent = 0;
    for (int k = 0; k < SERVERS_MAX; k++)
        if (servers[k].state != SERVER_FREE)
            poke(&servers[k]);
    announce();
    for (int i = 0; i < n; i++) {
        struct server *s = NULL;
        while (s == NULL) {
            for (int k = 0; k < SERVERS_MAX && s == NULL; k++)
                if (servers[k].state == SERVER_FREE)
                    s = &servers[k];
            if (s == NULL) /* the old ones end soon: each was poked */
                await_change();
        }
        memset(s, 0, sizeof(*s));
        s->fd = fds[i];
        s->gen = generation;
        s->state = SERVER_READING;
        s->req = malloc(FWD_FRAME_MAX_PAYLOAD);
        s->rep = malloc(FWD_FRAME_MAX_PAYLOAD);
        if (s->req == NULL || s->rep == NULL)
            hooks.fatal("malloc", ENOMEM);
        pthread_t th;
        pthread_attr_t attr;
        int e = pthread_attr_init(&attr);
        if (!e)
            e = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (!e)
            e = pthread_create(&th, &attr, server_main, s);
        if (e)
            hooks.fatal("pthread_create", e);
        (void)pthread_attr_destroy(&attr);
    }
    unlocked();
}

void direct_retire(void)
{
    locked();
    generation++;
    held = 0;
    for (int k = 0; k < SERVERS_MAX; k++)
        if (servers[k].state != SERVER_FREE)
            poke(&servers[k]);
    announce();
    unlocked();
}

void direct_drain(void)
{
    locked();
    for (;;) {
        int left = 0;
        for (int k = 0; k < SERVERS_MAX; k++)
            if (servers[k].state != SERVER_FREE && servers[k].gen != generation) {
                left = 1;
                poke(&servers[k]); /* again: the first may have come just before it blocked */
            }
        if (!left)
            break;
        struct timespec until;
        if (clock_gettime(CLOCK_REALTIME, &until) < 0)
            hooks.fatal("clock_gettime", errno);
        until.tv_nsec += DRAIN_POKE_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int e = pthread_cond_timedwait(&changed, &mu, &until);
        if (e && e != ETIMEDOUT)
            hooks.fatal("pthread_cond_timedwait", e);
    }
    unlocked();
}

void direct_hold(int on)
{
    locked();
    held = on;
    if (on)
        for (int k = 0; k < SERVERS_MAX; k++)
            if (servers[k].state == SERVER_READING || servers[k].state == SERVER_CALLING)
                poke(&servers[k]);
    announce();
    unlocked();
}

int64_t direct_held_bytes(void)
{
    locked();
    int busy = 0;
    for (int k = 0; k < SERVERS_MAX; k++) {
        struct server *s = &servers[k];
        if (s->gen == generation &&
            (s->state == SERVER_READING || s->state == SERVER_CALLING)) {
            busy = 1;
            poke(s); /* again: the first may have come just before its call blocked */
        }
    }
    int64_t r = held && !busy ? (int64_t)sent : -1;
    unlocked();
    return r;
}

void direct_signals_sent(unsigned long n)
{
    locked();
    unacked += n;
    unlocked();
}

void direct_signal_acked(void)
{
    locked();
    if (unacked > 0)
        unacked--;
    announce();
    unlocked();
}

void direct_interrupt_calls(void)
{
    locked();
    for (int k = 0; k < SERVERS_MAX; k++)
        if (servers[k].state == SERVER_CALLING) {
            servers[k].interrupts++;
            poke(&servers[k]);
        }
    unlocked();
}

int direct_is_own(long fd)
{
    if (fd < 0)
        return 0;
    locked();
    int own = 0;
    for (int k = 0; k < SERVERS_MAX; k++)
        if (servers[k].state != SERVER_FREE && servers[k].fd == fd)
            own = 1;
    unlocked();
    return own;
}

void direct_relocate(int fd)
{
    locked();
    for (int k = 0; k < SERVERS_MAX; k++) {
        struct server *s = &servers[k];
        if (s->state == SERVER_FREE || s->fd != fd)
            continue;
        int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (nfd < 0)
            hooks.fatal("F_DUPFD_CLOEXEC", errno);
        s->fd = nfd;
        if (close(fd) < 0) /* its poll, if any, sees POLLNVAL and looks again */
            hooks.fatal("close", errno);
    }
    unlocked();
}
