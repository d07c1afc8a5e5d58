/* forward_marshal.c - the forwarding table's lookups and buffer sizes, shared
 * by both sides of the marshaller (forward_marshal.h), and the checks that
 * forward.h, the generated table and the system headers agree. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "forward_marshal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#define FWD_CHECK_CONSTANTS /* the table's ioctl/fcntl numbers and struct sizes */
#include "forward_table.h"

_Static_assert(FWD_MAX_DATA == FWD_TABLE_MAX_DATA, "forward.h and the table disagree");
_Static_assert(FWD_LOCAL == FWD_PLACE_LOCAL && FWD_HOME == FWD_PLACE_HOME &&
                   FWD_TIME == FWD_PLACE_TIME && FWD_BRING_HOME == FWD_PLACE_BRING_HOME &&
                   FWD_FILE_MAP == FWD_PLACE_FILE_MAP &&
                   FWD_UNFORWARDABLE == FWD_PLACE_UNFORWARDABLE && FWD_SPLIT == FWD_PLACE_SPLIT,
               "placements");
_Static_assert(sizeof(struct fwd_request) == 160, "request head");
_Static_assert(sizeof(struct fwd_reply) == 24, "reply head");
_Static_assert(sizeof(struct fwd_msg) == 24, "fwd_msg");
_Static_assert(sizeof(struct fwd_reply) + 7 * (sizeof(struct fwd_out) + 8) <= FWD_HEAD_MAX,
               "reply head room");
_Static_assert(FWD_IOV_MAX == UIO_MAXIOV, "iovecs");
_Static_assert(sizeof(struct msghdr) == 56 && offsetof(struct msghdr, msg_namelen) == 8 &&
                   offsetof(struct msghdr, msg_controllen) == 40 &&
                   offsetof(struct msghdr, msg_flags) == 48,
               "msghdr layout");

/* ------------------------------------------------------------------ the table */

const struct fwd_entry *fwd_lookup(long nr, const uint64_t args[6])
{
    if (nr < 0 || nr >= FWD_TABLE_SIZE || !fwd_syscalls[nr].known)
        return NULL;
    const struct fwd_syscall *s = &fwd_syscalls[nr];
    for (unsigned i = 0; i < s->ncases; i++) {
        const struct fwd_case *c = &fwd_cases[s->first_case + i];
        unsigned j = 0;
        while (j < c->nconds && (args[c->cond[j].arg] & c->cond[j].mask) == c->cond[j].value)
            j++;
        if (j == c->nconds)
            return &c->entry;
    }
    return &s->entry;
}

enum fwd_placement fwd_placement(long nr, const uint64_t args[6])
{
    const struct fwd_entry *e = fwd_lookup(nr, args);
    return e ? (enum fwd_placement)e->placement : FWD_UNFORWARDABLE;
}

int fwd_restarts_after_handler(long nr)
{
    return fwd_table_restarts_after_handler(nr);
}

int fwd_forwarded(const struct fwd_entry *e)
{
    return e && (e->placement == FWD_PLACE_HOME || e->placement == FWD_PLACE_TIME);
}

/* The bytes of buffer d for values args (lenval: the socklen_t of a LENPTR size).
 * -E2BIG beyond FWD_MAX_DATA. */
int fwd_buffer_size(const struct fwd_arg *d, const uint64_t args[6], uint32_t lenval,
                    size_t *out)
{
    uint64_t n = 0;
    switch (d->size_how) {
    case FWD_SIZE_CONST:
        n = d->add;
        break;
    case FWD_SIZE_ARG: {
        uint64_t v = args[d->size_arg];
        uint64_t mul = d->mul ? d->mul : 1;
        if (v > FWD_MAX_DATA / mul)
            return -E2BIG;
        n = v * mul + d->add;
        break;
    }
    case FWD_SIZE_FDSET: {
        int bits = (int)args[d->size_arg];
        if (bits > (int)FWD_FDSET_MAX_BITS)
            return -E2BIG;
        n = bits < 0 ? 0 : ((uint64_t)bits + 63) / 64 * 8;
        break;
    }
    case FWD_SIZE_LENPTR:
        n = (int32_t)lenval < 0 ? 0 : lenval;
        break;
    default:
        return -EINVAL;
    }
    if (n > FWD_MAX_DATA)
        return -E2BIG;
    *out = (size_t)n;
    return 0;
}
