/* remote_private_poll.c - poll and select sets with private descriptors away:
 * see remote_private_poll.h. */
#include "remote_private_poll.h"

#include "forward.h"
#include "forward_marshal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RPP_MAX 1024 /* entries of a poll, bits of a select (RLIMIT_NOFILE away) */

/* select's readiness as the kernel derives it from poll's (fs/select.c). */
#define IN_SET (POLLIN | POLLRDNORM | POLLRDBAND | POLLHUP | POLLERR)
#define OUT_SET (POLLOUT | POLLWRNORM | POLLWRBAND | POLLERR)
#define EX_SET (POLLPRI)
#define IN_ASK (POLLIN | POLLRDNORM | POLLRDBAND)
#define OUT_ASK (POLLOUT | POLLWRNORM | POLLWRBAND)

/* The call being split (one at a time: the copy waits in it). */
static long call_nr;
static uint64_t call_args[6];
static struct timespec started;
static long long timeout_ms;        /* the call's (-1: none) */
static struct pollfd asked[RPP_MAX]; /* poll, ppoll: the copy's array as it was */
static unsigned nasked;
static fd_set sets[3]; /* select, pselect6: the copy's sets as they were */
static int have_set[3];
static int nbits;
/* The entries: for each, the copy's descriptor, its events, and where it was
 * polled (private here, or home's entry number), with its revents. */
static struct entry {
    int fd;
    short events;
    int private;
    unsigned home_at;
    short revents;
} entries[RPP_MAX];
static unsigned nentries;
static struct pollfd home[RPP_MAX]; /* the home part, sent as poll */
static uint64_t home_args[6];

int rpp_is_poll(long nr)
{
    return nr == SYS_poll || nr == SYS_ppoll || nr == SYS_select || nr == SYS_pselect6;
}

static int is_select(long nr)
{
    return nr == SYS_select || nr == SYS_pselect6;
}

/* The call's timeout in milliseconds, rounded up (-1: none), or -errno. */
static long long timeout_of(pid_t pid, long nr, const uint64_t args[6])
{
    if (nr == SYS_poll)
        return (int)args[2] < 0 ? -1 : (int)args[2];
    uint64_t at = nr == SYS_ppoll ? args[2] : args[4];
    if (at == 0)
        return -1;
    long long sec, sub, per_ms;
    if (nr == SYS_select) {
        struct timeval tv;
        if (fwd_read_mem(pid, &tv, at, sizeof(tv)) < 0)
            return -EFAULT;
        sec = tv.tv_sec, sub = tv.tv_usec, per_ms = 1000;
        if (sec < 0 || sub < 0 || sub >= 1000000)
            return -EINVAL;
    } else {
        struct timespec ts;
        if (fwd_read_mem(pid, &ts, at, sizeof(ts)) < 0)
            return -EFAULT;
        sec = ts.tv_sec, sub = ts.tv_nsec, per_ms = 1000000;
        if (sec < 0 || sub < 0 || sub >= 1000000000)
            return -EINVAL;
    }
    if (sec > INT_MAX / 1000)
        return INT_MAX;
    return sec * 1000 + (sub + per_ms - 1) / per_ms;
}

/* The entries of a poll or ppoll: 0, 1 (not served here: as before), or -errno. */
static int entries_of_poll(pid_t pid, const uint64_t args[6])
{
    if (args[1] > RPP_MAX)
        return 1;
    nasked = (unsigned)args[1];
    if (fwd_read_mem(pid, asked, args[0], nasked * sizeof(struct pollfd)) < 0)
        return 1;
    nentries = 0;
    for (unsigned k = 0; k < nasked; k++)
        if (asked[k].fd >= 0)
            entries[nentries++] = (struct entry){.fd = asked[k].fd, .events = asked[k].events};
    return 0;
}

/* The entries of a select or pselect6: one per descriptor in any set. */
static int entries_of_select(pid_t pid, const uint64_t args[6])
{
    nbits = (int)args[0];
    if (nbits < 0 || nbits > RPP_MAX)
        return 1;
    size_t bytes = (size_t)(nbits + 63) / 64 * 8;
    for (int s = 0; s < 3; s++) {
        FD_ZERO(&sets[s]);
        have_set[s] = args[1 + s] != 0;
        if (have_set[s] && fwd_read_mem(pid, &sets[s], args[1 + s], bytes) < 0)
            return 1;
    }
    nentries = 0;
    for (int fd = 0; fd < nbits; fd++) {
        short ev = (short)((FD_ISSET(fd, &sets[0]) ? IN_ASK : 0) |
                           (FD_ISSET(fd, &sets[1]) ? OUT_ASK : 0) |
                           (FD_ISSET(fd, &sets[2]) ? EX_SET : 0));
        if (ev)
            entries[nentries++] = (struct entry){.fd = fd, .events = ev};
    }
    return 0;
}

/* Poll the private entries here (no wait): whether one is ready. */
static int poll_private(int (*local_of)(uint64_t))
{
    struct pollfd here[RPP_MAX];
    unsigned n = 0;
    for (unsigned k = 0; k < nentries; k++)
        if (entries[k].private)
            here[n++] = (struct pollfd){.fd = local_of((uint64_t)entries[k].fd),
                                        .events = entries[k].events};
    if (poll(here, n, 0) < 0)
        return -errno;
    int ready = 0;
    n = 0;
    for (unsigned k = 0; k < nentries; k++)
        if (entries[k].private) {
            entries[k].revents = here[n++].revents;
            ready |= entries[k].revents != 0;
        }
    return ready;
}

enum rpp_action rpp_begin(pid_t pid, long nr, const uint64_t args[6], int (*local_of)(uint64_t),
                          void *buf, size_t cap, long *result)
{
    int r = is_select(nr) ? entries_of_select(pid, args) : entries_of_poll(pid, args);
    if (r != 0)
        return RPP_NONE;
    unsigned privates = 0;
    for (unsigned k = 0; k < nentries; k++) {
        entries[k].private = local_of((uint64_t)entries[k].fd) >= 0;
        privates += (unsigned)entries[k].private;
    }
    if (privates == 0)
        return RPP_NONE;
    if (privates == nentries)
        return RPP_CONTINUE;
    long long t = timeout_of(pid, nr, args);
    if (t < -1) {
        *result = (long)t;
        return RPP_ANSWER;
    }
    int ready = poll_private(local_of);
    if (ready < 0) {
        *result = ready;
        return RPP_ANSWER;
    }
    unsigned n = 0;
    for (unsigned k = 0; k < nentries; k++)
        if (!entries[k].private) {
            entries[k].home_at = n;
            home[n++] = (struct pollfd){.fd = entries[k].fd, .events = entries[k].events};
        }
    call_nr = nr;
    memcpy(call_args, args, sizeof(call_args));
    timeout_ms = t;
    if (clock_gettime(CLOCK_MONOTONIC, &started) < 0) {
        *result = -errno;
        return RPP_ANSWER;
    }
    memset(home_args, 0, sizeof(home_args));
    home_args[0] = (uint64_t)(uintptr_t)home;
    home_args[1] = n;
    home_args[2] = (uint64_t)(int64_t)(ready ? 0 : t > INT_MAX ? INT_MAX : t);
    long len = fwd_request(getpid(), SYS_poll, home_args, buf, cap);
    *result = len;
    return len < 0 ? RPP_ANSWER : RPP_SEND;
}

const uint64_t *rpp_args(void)
{
    return home_args;
}

/* The time left of the call's timeout, written back as the kernel does. */
static int write_time_left(pid_t pid)
{
    uint64_t at = call_nr == SYS_ppoll ? call_args[2] : call_args[4];
    if (call_nr == SYS_poll || at == 0)
        return 0;
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
        return -errno;
    long long spent_ns = (now.tv_sec - started.tv_sec) * 1000000000LL + now.tv_nsec - started.tv_nsec;
    long long left_ns;
    if (call_nr == SYS_select) {
        struct timeval tv;
        if (fwd_read_mem(pid, &tv, at, sizeof(tv)) < 0)
            return -EFAULT;
        left_ns = (tv.tv_sec * 1000000LL + tv.tv_usec) * 1000 - spent_ns;
        if (left_ns < 0)
            left_ns = 0;
        tv.tv_sec = left_ns / 1000000000;
        tv.tv_usec = left_ns % 1000000000 / 1000;
        return fwd_write_mem(pid, at, &tv, sizeof(tv));
    }
    struct timespec ts;
    if (fwd_read_mem(pid, &ts, at, sizeof(ts)) < 0)
        return -EFAULT;
    left_ns = ts.tv_sec * 1000000000LL + ts.tv_nsec - spent_ns;
    if (left_ns < 0)
        left_ns = 0;
    ts.tv_sec = left_ns / 1000000000;
    ts.tv_nsec = left_ns % 1000000000;
    return fwd_write_mem(pid, at, &ts, sizeof(ts));
}

static long merge_poll(pid_t pid)
{
    long count = 0;
    unsigned e = 0;
    for (unsigned k = 0; k < nasked; k++) {
        asked[k].revents = 0;
        if (asked[k].fd < 0)
            continue;
        asked[k].revents = entries[e].revents;
        count += asked[k].revents != 0;
        e++;
    }
    int err = fwd_write_mem(pid, call_args[0], asked, nasked * sizeof(struct pollfd));
    return err < 0 ? err : count;
}

static long merge_select(pid_t pid)
{
    fd_set out[3];
    long count = 0;
    for (int s = 0; s < 3; s++)
        FD_ZERO(&out[s]);
    for (unsigned k = 0; k < nentries; k++) {
        const struct entry *x = &entries[k];
        if (x->revents & POLLNVAL)
            return -EBADF;
        short got[3] = {x->revents & IN_SET, x->revents & OUT_SET, x->revents & EX_SET};
        for (int s = 0; s < 3; s++)
            if (FD_ISSET(x->fd, &sets[s]) && got[s]) {
                FD_SET(x->fd, &out[s]);
                count++;
            }
    }
    size_t bytes = (size_t)(nbits + 63) / 64 * 8;
    for (int s = 0; s < 3; s++)
        if (have_set[s]) {
            int err = fwd_write_mem(pid, call_args[1 + s], &out[s], bytes);
            if (err < 0)
                return err;
        }
    return count;
}

long rpp_replied(pid_t pid, const void *reply, size_t len)
{
    long r = fwd_apply(getpid(), SYS_poll, home_args, reply, len);
    if (r < 0)
        return r;
    for (unsigned k = 0; k < nentries; k++)
        if (!entries[k].private)
            entries[k].revents = home[entries[k].home_at].revents;
    long count = is_select(call_nr) ? merge_select(pid) : merge_poll(pid);
    if (count < 0)
        return count;
    int err = write_time_left(pid);
    return err < 0 ? err : count;
}
