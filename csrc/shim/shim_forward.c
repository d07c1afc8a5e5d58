/* shim_forward.c - the fast path of a migrated process's forwarded calls.
 *
 * A copy restored on a remote node from an image with this shim's SIGSYS
 * handler runs under the fast variant of the forward filter (forward_table.h):
 * a call placed at home traps with FWD_TRAP_MAGIC, and the handler marshals it
 * from the process's own memory (forward_memory_local.c),
 * sends one REQUEST frame over a direct channel to the deputy (descriptors
 * FWD_DIRECT_FD, FWD_DIRECT_FD - 1, ...: one per thread that may call at once,
 * put there by the restorer), waits for the REPLY and copies its outputs back:
 * no user notification and no supervisor in between.  Its own sendto/recvfrom
 * carry FWD_DIRECT_MAGIC as the sixth argument, which the filter lets through
 * (the kernel ignores it with a null address).  Each channel carries one call
 * at a time, and the deputy serves each channel on a thread of its own: a call
 * blocked at home holds only its own channel.
 *
 * The handler runs with every other signal blocked (the shim's sa_mask): a
 * thread's frames are never interleaved with another of its calls'.  A signal sent to
 * the home pid interrupts the deputy's call there (EINTR), and the deputy
 * replies only once the supervisor has delivered the signal to this process:
 * it is pending here and runs as the handler returns.  Signals raised on this
 * node (its timers) wait until a call blocked at home returns.
 *
 * Raw system calls only, no libc: forward_marshal.c's memcpy and friends are
 * the shim's own (shim_mem.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shim_forward.h"

#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "forward.h"
#include "forward_table.h"
#include "forward_wire.h"
#include "raw_syscall.h"

/* A channel: its frame buffer for the request, then the reply (the request is
 * not needed once sent), and its lock: a thread takes a free channel for a
 * whole call (the handler is not re-entered in a thread: signals are blocked in
 * it); when every channel is busy it waits for one.  A thread captured while it
 * holds a channel resumes holding it; its call finds the channel gone (or
 * another one there) and is issued again (SHIM_FORWARD_AGAIN), which lets the
 * lock go. */
struct channel {
    unsigned char frame[sizeof(struct fwd_frame) + FWD_FRAME_MAX_PAYLOAD]
        __attribute__((aligned(16)));
    uint64_t next_id;
    int lock_word; /* 0 free, 1 held, 2 held and waited for (the futex's word) */
    int fd;
};
static struct channel channels[FWD_DIRECT_MAX];
static unsigned waits; /* spreads the waits for a busy channel over them */

static int channel_trylock(struct channel *c)
{
    int free_word = 0;
    return __atomic_compare_exchange_n(&c->lock_word, &free_word, 1, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static void channel_lock(struct channel *c)
{
    int w = 0;
    if (__atomic_compare_exchange_n(&c->lock_word, &w, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    if (w != 2)
        w = __atomic_exchange_n(&c->lock_word, 2, __ATOMIC_ACQUIRE);
    while (w != 0) {
        /* EAGAIN (let go meanwhile) and EINTR: look again; nothing else is possible */
        (void)mosix_raw6(SYS_futex, (long)&c->lock_word, FUTEX_WAIT_PRIVATE, 2, 0, 0, 0);
        w = __atomic_exchange_n(&c->lock_word, 2, __ATOMIC_ACQUIRE);
    }
}

static void channel_unlock(struct channel *c)
{
    if (__atomic_exchange_n(&c->lock_word, 0, __ATOMIC_RELEASE) == 2)
        (void)mosix_raw6(SYS_futex, (long)&c->lock_word, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
}

/* Whether descriptor fd is open here (a direct channel: the restorer puts them
 * at FWD_DIRECT_FD down, as many as the move opened); asked without reading. */
static int channel_present(int fd)
{
    long n = mosix_raw6(SYS_recvfrom, fd, 0, 0, MSG_PEEK | MSG_DONTWAIT, 0, FWD_DIRECT_MAGIC);
    return n != -EBADF && n != -ENOTSOCK;
}

/* A channel for one call, locked: the first (a single thread never looks
 * further), else the first free one present, else a wait for one of those. */
static struct channel *channel_take(void)
{
    if (channel_trylock(&channels[0]))
        return &channels[0];
    int present = 1;
    for (int k = 1; k < FWD_DIRECT_MAX; k++) {
        struct channel *c = &channels[k];
        if (!channel_trylock(c)) {
            present = k + 1; /* held: present when its holder took it */
            continue;
        }
        if (channel_present(FWD_DIRECT_FD - k))
            return c;
        channel_unlock(c);
        break; /* they are consecutive: none past the first absent */
    }
    unsigned pick = __atomic_fetch_add(&waits, 1, __ATOMIC_RELAXED) % (unsigned)present;
    struct channel *c = &channels[pick];
    channel_lock(c);
    return c;
}

/* Calls that went this way (a program, or a test, may look: weak symbol). */
__attribute__((visibility("default"))) unsigned long mosix_shim_fast_calls;

static long channel_send(int fd, const unsigned char *p, size_t len)
{
    while (len) {
        long n = mosix_raw6(SYS_sendto, fd, (long)p, (long)len, MSG_NOSIGNAL, 0,
                            FWD_DIRECT_MAGIC);
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? n : -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The reply to request id into frame (header, then payload), read as it comes:
 * usually one recvfrom (one request is outstanding, so nothing else follows it).
 * Its payload length, or a negative errno of the channel (-EPROTO: not the reply). */
static long receive_reply(struct channel *c, uint64_t id)
{
    unsigned char *frame = c->frame;
    size_t have = 0, want = sizeof(struct fwd_frame);
    int head_seen = 0;
    while (have < want) {
        long n = mosix_raw6(SYS_recvfrom, c->fd, (long)(frame + have),
                            (long)(sizeof(c->frame) - have), 0, 0, FWD_DIRECT_MAGIC);
        if (n == -EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? n : -EPIPE;
        have += (size_t)n;
        if (!head_seen && have >= sizeof(struct fwd_frame)) {
            struct fwd_frame reply;
            __builtin_memcpy(&reply, frame, sizeof(reply));
            if (reply.type != FWD_FRAME_REPLY || reply.id != id ||
                reply.len > FWD_FRAME_MAX_PAYLOAD)
                return -EPROTO;
            head_seen = 1;
            want = sizeof(reply) + reply.len;
        }
    }
    return have == want ? (long)(want - sizeof(struct fwd_frame)) : -EPROTO;
}

/* One round trip; the reply's payload length, or a negative errno of the channel. */
static long round_trip(struct channel *c, size_t request_len)
{
    struct fwd_frame head = {(uint32_t)request_len, FWD_FRAME_REQUEST, ++c->next_id};
    __builtin_memcpy(c->frame, &head, sizeof(head));
    long err = channel_send(c->fd, c->frame, sizeof(head) + request_len);
    if (err < 0)
        return err;
    return receive_reply(c, head.id);
}

/* The deputy's call ended with EINTR: a signal for the home pid interrupted
 * it, and the supervisor delivered it here before the reply (it is pending:
 * this handler blocks every signal).  Whether the kernel would have made the
 * call again for the program: a signal it ignores or blocks would not have
 * interrupted it; a stop (or its end) restarts it; the first signal it takes
 * with a handler decides: SA_RESTART restarts it, unless no handler restarts
 * such a call (poll, select...: fwd_restarts_after_handler); else EINTR. */
static int restarts(long nr, uint64_t program_mask)
{
    uint64_t pending = 0; /* pending and blocked here: every pending signal */
    if (mosix_raw2(SYS_rt_sigpending, &pending, sizeof(pending)) < 0)
        return 0;
    uint64_t takes = pending & ~program_mask;
    for (int sig = 1; sig <= 64; sig++) {
        if (!(takes & (1ull << (sig - 1))) || sig == SIGSYS)
            continue;
        struct ksigaction now;
        if (mosix_raw4(SYS_rt_sigaction, sig, 0, &now, sizeof(now.mask)) < 0)
            continue;
        if (now.handler == SIG_IGN)
            continue;
        if (now.handler == SIG_DFL) {
            if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT)
                continue; /* ignored by default: never interrupts */
            return 1;     /* a stop (restarted when continued) or the end */
        }
        return (now.flags & SA_RESTART) && fwd_restarts_after_handler(nr);
    }
    return 1;
}

static enum shim_forward_outcome forward_on(struct channel *c, long nr, const uint64_t args[6],
                                            uint64_t program_mask, long *ret);

enum shim_forward_outcome shim_forward_call(long nr, const uint64_t args[6],
                                            uint64_t program_mask, long *ret)
{
    struct channel *c = channel_take();
    c->fd = FWD_DIRECT_FD - (int)(c - channels);
    enum shim_forward_outcome o = forward_on(c, nr, args, program_mask, ret);
    channel_unlock(c);
    return o;
}

static enum shim_forward_outcome forward_on(struct channel *c, long nr, const uint64_t args[6],
                                            uint64_t program_mask, long *ret)
{
    unsigned char *payload = c->frame + sizeof(struct fwd_frame);
    long len = fwd_request(0, nr, args, payload, FWD_FRAME_MAX_PAYLOAD);
    if (len < 0) { /* answered here, as the supervisor would (E2BIG, ENAMETOOLONG, ...) */
        *ret = len;
        return SHIM_FORWARD_DONE;
    }
    long got = round_trip(c, (size_t)len);
    if (got == -EPROTO) { /* not the deputy's reply */
        *ret = -EIO;
        return SHIM_FORWARD_DONE;
    }
    if (got < 0) {
        /* No channel (restored at home in the middle of this handler), or its
         * end: the deputy closes it only between calls, so this one was not
         * executed.  The copy is about to be captured (the deputy holds the
         * channel and becomes its restorer) or killed (its home is gone):
         * issue the call again meanwhile; at home it then runs natively. */
        if (got != -EBADF && got != -ENOTSOCK)
            (void)mosix_raw0(SYS_sched_yield);
        return SHIM_FORWARD_AGAIN;
    }
    int64_t result = fwd_reply_ret(payload, (size_t)got);
    if (result == FWD_RET_AGAIN) /* blocked at home, leaving: made again where it goes */
        return SHIM_FORWARD_AGAIN;
    if (result == -EINTR && restarts(nr, program_mask))
        return SHIM_FORWARD_AGAIN;
    *ret = fwd_apply(0, nr, args, payload, (size_t)got);
    __atomic_fetch_add(&mosix_shim_fast_calls, 1, __ATOMIC_RELAXED);
    return SHIM_FORWARD_DONE;
}
