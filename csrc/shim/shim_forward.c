/* shim_forward.c - the fast path of a migrated process's forwarded calls.
 *
 * A copy restored on a remote node from an image with this shim's SIGSYS
 * handler runs under the fast variant of the forward filter (forward_table.h):
 * a call placed at home traps with FWD_TRAP_MAGIC, and the handler marshals it
 * from the process's own memory (forward_memory_local.c),
 * sends one REQUEST frame over the direct channel to the deputy (descriptor
 * FWD_DIRECT_FD, put there by the restorer), waits for the REPLY and copies
 * its outputs back: no user notification and no supervisor in between.  Its
 * own sendto/recvfrom carry FWD_DIRECT_MAGIC as the sixth argument, which the
 * filter lets through (the kernel ignores it with a null address).
 *
 * The handler runs with every other signal blocked (the shim's sa_mask): the
 * frames of one call are never interleaved with another's.  A signal sent to
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

/* One frame buffer for the request, then the reply (the request is not needed
 * once sent), used under forward_lock: the threads of a process take turns on
 * the one channel, a whole call each (the handler is not re-entered in a
 * thread: signals are blocked in it).  A thread captured while it holds the
 * lock resumes holding it; its call finds the channel gone and is issued
 * again (SHIM_FORWARD_AGAIN), which lets the lock go. */
static unsigned char frame[sizeof(struct fwd_frame) + FWD_FRAME_MAX_PAYLOAD]
    __attribute__((aligned(16)));
static uint64_t next_id = 1;

/* 0 free, 1 held, 2 held and waited for (the futex's word). */
static int forward_lock_word;

static void forward_lock(void)
{
    int c = 0;
    if (__atomic_compare_exchange_n(&forward_lock_word, &c, 1, 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED))
        return;
    if (c != 2)
        c = __atomic_exchange_n(&forward_lock_word, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        /* EAGAIN (let go meanwhile) and EINTR: look again; nothing else is possible */
        (void)mosix_raw6(SYS_futex, (long)&forward_lock_word, FUTEX_WAIT_PRIVATE, 2, 0, 0, 0);
        c = __atomic_exchange_n(&forward_lock_word, 2, __ATOMIC_ACQUIRE);
    }
}

static void forward_unlock(void)
{
    if (__atomic_exchange_n(&forward_lock_word, 0, __ATOMIC_RELEASE) == 2)
        (void)mosix_raw6(SYS_futex, (long)&forward_lock_word, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
}

/* Calls that went this way (a program, or a test, may look: weak symbol). */
__attribute__((visibility("default"))) unsigned long mosix_shim_fast_calls;

static long channel_send(const unsigned char *p, size_t len)
{
    while (len) {
        long n = mosix_raw6(SYS_sendto, FWD_DIRECT_FD, (long)p, (long)len, MSG_NOSIGNAL, 0,
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
static long receive_reply(uint64_t id)
{
    size_t have = 0, want = sizeof(struct fwd_frame);
    int head_seen = 0;
    while (have < want) {
        long n = mosix_raw6(SYS_recvfrom, FWD_DIRECT_FD, (long)(frame + have),
                            (long)(sizeof(frame) - have), 0, 0, FWD_DIRECT_MAGIC);
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
static long round_trip(size_t request_len)
{
    struct fwd_frame head = {(uint32_t)request_len, FWD_FRAME_REQUEST, next_id++};
    __builtin_memcpy(frame, &head, sizeof(head));
    long err = channel_send(frame, sizeof(head) + request_len);
    if (err < 0)
        return err;
    return receive_reply(head.id);
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

static enum shim_forward_outcome forward_locked(long nr, const uint64_t args[6],
                                                uint64_t program_mask, long *ret);

enum shim_forward_outcome shim_forward_call(long nr, const uint64_t args[6],
                                            uint64_t program_mask, long *ret)
{
    forward_lock();
    enum shim_forward_outcome o = forward_locked(nr, args, program_mask, ret);
    forward_unlock();
    return o;
}

static enum shim_forward_outcome forward_locked(long nr, const uint64_t args[6],
                                                uint64_t program_mask, long *ret)
{
    unsigned char *payload = frame + sizeof(struct fwd_frame);
    long len = fwd_request(0, nr, args, payload, FWD_FRAME_MAX_PAYLOAD);
    if (len < 0) { /* answered here, as the supervisor would (E2BIG, ENAMETOOLONG, ...) */
        *ret = len;
        return SHIM_FORWARD_DONE;
    }
    long got = round_trip((size_t)len);
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
    mosix_shim_fast_calls++;
    return SHIM_FORWARD_DONE;
}
