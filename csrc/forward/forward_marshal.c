/* forward_marshal.c - requests and replies of forwarded system calls (forward.h).
 *
 * One table (forward_table.h, generated from mosix/discipline/forwarding.py)
 * says for each call where it runs and what each argument is.  Both sides size
 * every buffer from it:
 *   remote  plan() reads what the sizes depend on from the process (socklen_t
 *           values, iovec arrays, msghdrs) and clamps read/write-like counts;
 *           fwd_request() copies the inputs, fwd_apply() writes the outputs;
 *   home    fwd_execute() recomputes each size from the request's own values
 *           and checks every span against it before the kernel sees a pointer.
 * Memory of the process is read and written with process_vm_readv/writev, or,
 * built with FWD_IN_PROCESS (the preload shim's fast path, which marshals its
 * own calls in its SIGSYS handler), copied in place: then the pid arguments
 * are unused, only the remote side is built and no libc function is called
 * (the shim has its own memcpy and friends, shim_mem.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "forward.h"

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

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)
#define IS_OUTPUT(k)                                                                          \
    ((k) == FWD_KIND_OUT || (k) == FWD_KIND_INOUT || (k) == FWD_KIND_IOV_OUT ||              \
     (k) == FWD_KIND_MSG_OUT)
#define IS_POINTER(k) ((k) != FWD_KIND_NONE && (k) != FWD_KIND_VAL && (k) != FWD_KIND_DROP)

/* ------------------------------------------------------------------ the table */

static const struct fwd_entry *lookup(long nr, const uint64_t args[6])
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
    const struct fwd_entry *e = lookup(nr, args);
    return e ? (enum fwd_placement)e->placement : FWD_UNFORWARDABLE;
}

static int forwarded(const struct fwd_entry *e)
{
    return e && (e->placement == FWD_PLACE_HOME || e->placement == FWD_PLACE_TIME);
}

/* The bytes of buffer d for values args (lenval: the socklen_t of a LENPTR size).
 * -E2BIG beyond FWD_MAX_DATA. */
static int buffer_size(const struct fwd_arg *d, const uint64_t args[6], uint32_t lenval,
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

/* ------------------------------------------------------- the process's memory */

#ifdef FWD_IN_PROCESS

/* In the process itself: a bad pointer faults here (SIGSEGV) where the
 * kernel would have said EFAULT. */
static int read_mem(pid_t pid, void *dst, uint64_t addr, size_t len)
{
    (void)pid;
    if (len)
        memcpy(dst, (const void *)(uintptr_t)addr, len);
    return 0;
}

static int write_mem(pid_t pid, uint64_t addr, const void *src, size_t len)
{
    (void)pid;
    if (len)
        memcpy((void *)(uintptr_t)addr, src, len);
    return 0;
}

static int vec_io(pid_t pid, int write, void *buf, size_t len, const struct iovec *iov, size_t n)
{
    (void)pid;
    unsigned char *b = buf;
    size_t left = len;
    for (size_t i = 0; i < n && left > 0; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        if (take == 0)
            continue;
        if (write)
            memcpy(iov[i].iov_base, b, take);
        else
            memcpy(b, iov[i].iov_base, take);
        b += take;
        left -= take;
    }
    return left == 0 ? 0 : -EFAULT;
}

#else

static int vm_error(ssize_t got, size_t want)
{
    if (got < 0)
        return errno == EFAULT ? -EFAULT : -errno;
    return (size_t)got == want ? 0 : -EFAULT;
}

static int read_mem(pid_t pid, void *dst, uint64_t addr, size_t len)
{
    if (len == 0)
        return 0;
    struct iovec local = {dst, len}, remote = {(void *)(uintptr_t)addr, len};
    return vm_error(process_vm_readv(pid, &local, 1, &remote, 1, 0), len);
}

static int write_mem(pid_t pid, uint64_t addr, const void *src, size_t len)
{
    if (len == 0)
        return 0;
    struct iovec local = {(void *)(uintptr_t)src, len}, remote = {(void *)(uintptr_t)addr, len};
    return vm_error(process_vm_writev(pid, &local, 1, &remote, 1, 0), len);
}

/* The first len bytes of iovecs iov[0..n) to or from one contiguous buffer. */
static int vec_io(pid_t pid, int write, void *buf, size_t len, const struct iovec *iov, size_t n)
{
    struct iovec local = {buf, len};
    struct iovec remote[FWD_IOV_MAX];
    size_t k = 0, left = len;
    for (size_t i = 0; i < n && left > 0; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        if (take == 0)
            continue;
        remote[k].iov_base = iov[i].iov_base;
        remote[k++].iov_len = take;
        left -= take;
    }
    if (left != 0)
        return -EFAULT;
    if (len == 0)
        return 0;
    ssize_t got = write ? process_vm_writev(pid, &local, 1, remote, k, 0)
                        : process_vm_readv(pid, &local, 1, remote, k, 0);
    return vm_error(got, len);
}

#endif

/* A NUL-terminated string of at most FWD_PATH_MAX bytes: its length with the NUL. */
static long read_path(pid_t pid, uint64_t addr, char *dst)
{
    size_t got = 0;
    while (got < FWD_PATH_MAX) {
        size_t chunk = 4096 - ((addr + got) & 4095);
        if (chunk > FWD_PATH_MAX - got)
            chunk = FWD_PATH_MAX - got;
        int err = read_mem(pid, dst + got, addr + got, chunk);
        if (err < 0)
            return err;
        char *nul = memchr(dst + got, 0, chunk);
        if (nul)
            return nul - dst + 1;
        got += chunk;
    }
    return -ENAMETOOLONG;
}

/* --------------------------------------------------------------- the plan */

struct plan_arg {
    uint64_t addr; /* the process's pointer */
    size_t in;     /* input data bytes (PATH: FWD_PATH_MAX until read) */
    size_t out;    /* output capacity */
    size_t meta;   /* request bytes ahead of the data: iovec lengths, struct fwd_msg */
};

struct plan {
    const struct fwd_entry *e;
    uint64_t args[6]; /* as sent: counts clamped */
    struct plan_arg a[6];
    int vec;                 /* the IOV or MSG argument, or -1 */
    size_t niov;             /* its iovecs, after clamping */
    size_t vec_total;        /* their bytes */
    struct iovec iov[FWD_IOV_MAX];
    struct msghdr msg;       /* MSG: the process's msghdr */
    struct fwd_msg m;        /* MSG: name and control sizes sent */
};

static int read_iovecs(pid_t pid, struct plan *p, uint64_t addr, uint64_t n, int too_many)
{
    if (n > FWD_IOV_MAX)
        return too_many;
    int err = read_mem(pid, p->iov, addr, n * sizeof(struct iovec));
    if (err < 0)
        return err;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (p->iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return -EINVAL;
        total += p->iov[i].iov_len;
    }
    p->niov = n;
    p->vec_total = total;
    return 0;
}

/* Keep the first room bytes of the iovecs. */
static void clamp_iovecs(struct plan *p, size_t room)
{
    size_t used = 0, i = 0;
    while (i < p->niov && used < room) {
        if (p->iov[i].iov_len > room - used)
            p->iov[i].iov_len = room - used;
        used += p->iov[i].iov_len;
        i++;
    }
    /* zero-length iovecs after the last byte change nothing: drop them */
    p->niov = i;
    p->vec_total = used;
}

static int plan_msg(pid_t pid, struct plan *p, const struct fwd_arg *d, uint64_t addr)
{
    int err = read_mem(pid, &p->msg, addr, sizeof(p->msg));
    if (err < 0)
        return err;
    err = read_iovecs(pid, p, (uintptr_t)p->msg.msg_iov, p->msg.msg_iovlen, -EMSGSIZE);
    if (err < 0)
        return err;
    memset(&p->m, 0, sizeof(p->m));
    int in = d->kind == FWD_KIND_MSG_IN;
    if (p->msg.msg_name) {
        p->m.present |= FWD_MSG_NAME;
        int namelen = (int)p->msg.msg_namelen;
        if (namelen < 0 || (in && namelen > (int)FWD_SOCKADDR_MAX))
            return -EINVAL;
        p->m.namelen = namelen > (int)FWD_SOCKADDR_MAX ? FWD_SOCKADDR_MAX : (uint32_t)namelen;
    }
    if (p->msg.msg_control) {
        p->m.present |= FWD_MSG_CONTROL;
        if (in && p->msg.msg_controllen > FWD_CONTROL_MAX)
            return -ENOBUFS;
        p->m.controllen =
            p->msg.msg_controllen > FWD_CONTROL_MAX ? FWD_CONTROL_MAX : p->msg.msg_controllen;
    }
    p->m.flags = (uint32_t)p->msg.msg_flags;
    return 0;
}

/* Sizes of the data part of the vector argument (which clamping may cut). */
static void vec_sizes(struct plan *p)
{
    struct plan_arg *pa = &p->a[p->vec];
    size_t head = p->m.namelen + p->m.controllen;
    switch (p->e->arg[p->vec].kind) {
    case FWD_KIND_IOV_IN:
        pa->meta = 8 * p->niov;
        pa->in = p->vec_total;
        break;
    case FWD_KIND_IOV_OUT:
        pa->meta = 8 * p->niov;
        pa->out = p->vec_total;
        break;
    case FWD_KIND_MSG_IN:
        pa->meta = sizeof(struct fwd_msg) + 8 * p->niov;
        pa->in = head + p->vec_total;
        break;
    case FWD_KIND_MSG_OUT:
        pa->meta = sizeof(struct fwd_msg) + 8 * p->niov;
        pa->out = sizeof(struct fwd_msg) + head + p->vec_total;
        break;
    }
}

static size_t request_bytes(const struct plan *p)
{
    size_t n = 0;
    for (int i = 0; i < 6; i++)
        if (p->a[i].addr)
            n += ALIGN8(p->a[i].meta + p->a[i].in);
    return n;
}

static size_t reply_bytes(const struct plan *p)
{
    size_t n = 0;
    for (int i = 0; i < 6; i++)
        if (p->a[i].addr && IS_OUTPUT(p->e->arg[i].kind))
            n += sizeof(struct fwd_out) + ALIGN8(p->a[i].out);
    return n;
}

/* Everything about call (nr, args) of pid that its request and reply depend on. */
static int plan(pid_t pid, long nr, const uint64_t args[6], struct plan *p)
{
    const struct fwd_entry *e = lookup(nr, args);
    if (!e)
        return -ENOSYS;
    if (e->placement == FWD_PLACE_UNFORWARDABLE)
        return -(e->error ? e->error : ENOSYS);
    if (!forwarded(e))
        return -ENOSYS;
    memset(p->a, 0, sizeof(p->a));
    p->e = e;
    p->vec = -1;
    p->niov = p->vec_total = 0;
    memset(&p->m, 0, sizeof(p->m));
    for (int i = 0; i < 6; i++)
        p->args[i] = i < e->nargs ? args[i] : 0;
    for (int i = 0; i < e->nargs; i++) { /* select: nfds beyond any fd table */
        const struct fwd_arg *d = &e->arg[i];
        if (d->size_how == FWD_SIZE_FDSET && (int)p->args[d->size_arg] > (int)FWD_FDSET_MAX_BITS)
            p->args[d->size_arg] = FWD_FDSET_MAX_BITS;
    }
    int clamped = -1; /* the argument whose size is cut to what is left */
    for (int i = 0; i < e->nargs; i++) {
        const struct fwd_arg *d = &e->arg[i];
        struct plan_arg *pa = &p->a[i];
        if (!IS_POINTER(d->kind) || args[i] == 0)
            continue;
        pa->addr = args[i];
        int err = 0;
        switch (d->kind) {
        case FWD_KIND_PATH:
            pa->in = FWD_PATH_MAX;
            break;
        case FWD_KIND_IN:
        case FWD_KIND_OUT:
        case FWD_KIND_INOUT: {
            uint32_t lenval = 0;
            if (d->size_how == FWD_SIZE_LENPTR && args[d->size_arg] &&
                (err = read_mem(pid, &lenval, args[d->size_arg], sizeof(lenval))) < 0)
                return err;
            size_t n = 0;
            err = buffer_size(d, p->args, lenval, &n);
            if (d->flags & FWD_F_CLAMP) { /* sized below, whatever it asks for */
                clamped = i;
                if (err == -E2BIG)
                    err = 0;
            }
            if (err < 0)
                return err;
            if (d->kind != FWD_KIND_OUT)
                pa->in = n;
            if (d->kind != FWD_KIND_IN)
                pa->out = n;
            break;
        }
        case FWD_KIND_IOV_IN:
        case FWD_KIND_IOV_OUT:
            err = read_iovecs(pid, p, args[i], args[d->size_arg], -EINVAL);
            p->vec = i;
            break;
        case FWD_KIND_MSG_IN:
        case FWD_KIND_MSG_OUT:
            err = plan_msg(pid, p, d, args[i]);
            p->vec = i;
            break;
        }
        if (err < 0)
            return err;
        if (p->vec == i) {
            vec_sizes(p);
            if (d->flags & FWD_F_CLAMP)
                clamped = i;
        }
    }
    if (clamped >= 0) { /* cut the clampable argument to the room the others leave */
        const struct fwd_arg *d = &e->arg[clamped];
        struct plan_arg *pa = &p->a[clamped];
        int in = d->kind == FWD_KIND_IN || d->kind == FWD_KIND_IOV_IN || d->kind == FWD_KIND_MSG_IN;
        size_t saved_in = pa->in, saved_out = pa->out;
        pa->in = pa->out = 0;
        size_t used = (in ? request_bytes(p) : reply_bytes(p)) + 8; /* + padding */
        size_t room = used < FWD_MAX_DATA ? FWD_MAX_DATA - used : 0;
        pa->in = saved_in;
        pa->out = saved_out;
        if (p->vec == clamped) {
            size_t fixed = (in ? pa->in : pa->out) - p->vec_total;
            if (p->vec_total > (room > fixed ? room - fixed : 0)) {
                clamp_iovecs(p, room > fixed ? room - fixed : 0);
                if (d->kind == FWD_KIND_IOV_IN || d->kind == FWD_KIND_IOV_OUT)
                    p->args[d->size_arg] = p->niov;
                vec_sizes(p);
            }
        } else if (d->size_how == FWD_SIZE_ARG) {
            uint64_t mul = d->mul ? d->mul : 1;
            uint64_t count = p->args[d->size_arg];
            if (count > FWD_MAX_DATA / mul || count * mul + d->add > room) {
                count = room > d->add ? (room - d->add) / mul : 0;
                p->args[d->size_arg] = count;
            }
            size_t n = count * mul + d->add;
            if (d->kind != FWD_KIND_OUT)
                pa->in = n;
            if (d->kind != FWD_KIND_IN)
                pa->out = n;
        }
    }
    if (request_bytes(p) > FWD_MAX_DATA || reply_bytes(p) > FWD_MAX_DATA)
        return -E2BIG;
    return 0;
}

/* ------------------------------------------------------------ remote: request */

long fwd_request(pid_t pid, long nr, const uint64_t args[6], void *buf, size_t cap)
{
    struct plan p;
    int err = plan(pid, nr, args, &p);
    if (err < 0)
        return err;
    if (cap < sizeof(struct fwd_request))
        return -ENOBUFS;
    size_t room = cap - sizeof(struct fwd_request);
    if (room > FWD_MAX_DATA)
        room = FWD_MAX_DATA;
    struct fwd_request h;
    memset(&h, 0, sizeof(h));
    h.magic = FWD_REQUEST_MAGIC;
    h.nr = (uint32_t)nr;
    unsigned char *data = (unsigned char *)buf + sizeof(h);
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        const struct fwd_arg *d = &p.e->arg[i];
        struct plan_arg *pa = &p.a[i];
        if (i >= p.e->nargs || d->kind == FWD_KIND_DROP)
            continue;
        if (!IS_POINTER(d->kind)) {
            h.args[i] = p.args[i];
            continue;
        }
        if (!pa->addr)
            continue;
        h.args[i] = 1;
        if (off > room || ALIGN8(pa->meta + pa->in) > room - off)
            return -ENOBUFS;
        unsigned char *at = data + off;
        size_t in = pa->in;
        switch (d->kind) {
        case FWD_KIND_PATH: {
            long n = read_path(pid, pa->addr, (char *)at);
            if (n < 0)
                return n;
            in = (size_t)n;
            break;
        }
        case FWD_KIND_IN:
        case FWD_KIND_INOUT:
            err = read_mem(pid, at, pa->addr, in);
            break;
        case FWD_KIND_OUT:
            break;
        case FWD_KIND_IOV_IN:
        case FWD_KIND_IOV_OUT:
        case FWD_KIND_MSG_IN:
        case FWD_KIND_MSG_OUT: {
            int msg = d->kind == FWD_KIND_MSG_IN || d->kind == FWD_KIND_MSG_OUT;
            unsigned char *w = at;
            if (msg) {
                p.m.iovlen = (uint32_t)p.niov;
                memcpy(w, &p.m, sizeof(p.m));
                w += sizeof(p.m);
            }
            if (d->kind == FWD_KIND_MSG_IN) {
                if ((err = read_mem(pid, w, (uintptr_t)p.msg.msg_name, p.m.namelen)) < 0)
                    return err;
                w += p.m.namelen;
                if ((err = read_mem(pid, w, (uintptr_t)p.msg.msg_control, p.m.controllen)) < 0)
                    return err;
                w += p.m.controllen;
            }
            for (size_t k = 0; k < p.niov; k++) {
                uint64_t len = p.iov[k].iov_len;
                memcpy(w, &len, 8);
                w += 8;
            }
            if (d->kind == FWD_KIND_IOV_IN || d->kind == FWD_KIND_MSG_IN)
                err = vec_io(pid, 0, w, p.vec_total, p.iov, p.niov);
            in = (d->kind == FWD_KIND_IOV_OUT || d->kind == FWD_KIND_MSG_OUT)
                     ? pa->meta
                     : pa->meta + pa->in;
            break;
        }
        }
        if (err < 0)
            return err;
        h.span[i].off = (uint32_t)off;
        h.span[i].in_len = (uint32_t)in;
        h.span[i].out_len = IS_OUTPUT(d->kind) ? (uint32_t)pa->out : 0;
        memset(at + in, 0, ALIGN8(in) - in);
        off += ALIGN8(in);
    }
    h.data_len = (uint32_t)off;
    memcpy(buf, &h, sizeof(h));
    return (long)(sizeof(h) + off);
}

#ifndef FWD_IN_PROCESS /* the home side is the deputy's */

/* -------------------------------------------------------------- home: execute */

int fwd_request_call(const void *req, size_t len, long *nr, uint64_t args[6])
{
    struct fwd_request h;
    if (len < sizeof(h))
        return -EINVAL;
    memcpy(&h, req, sizeof(h));
    if (h.magic != FWD_REQUEST_MAGIC || h.data_len != len - sizeof(h))
        return -EINVAL;
    *nr = h.nr;
    memcpy(args, h.args, sizeof(h.args));
    return 0;
}

size_t fwd_reply_result(void *reply, size_t cap, int64_t ret)
{
    struct fwd_reply r = {FWD_REPLY_MAGIC, 0, ret, 0, 0};
    if (cap < sizeof(r))
        return 0;
    memcpy(reply, &r, sizeof(r));
    return sizeof(r);
}

/* What fwd_execute knows about one argument while the call runs. */
struct exec_arg {
    size_t seg;  /* offset of its segment (struct fwd_out) in the reply's data */
    size_t cap;  /* output capacity */
    int has_out; /* it has a segment */
};

struct exec {
    const unsigned char *data; /* the request's data */
    size_t data_len;
    const struct fwd_request *h;
    unsigned char *rdata; /* the reply's data */
    size_t rroom, rlen;
    struct exec_arg a[6];
    struct iovec iov[FWD_IOV_MAX];
    struct msghdr msg;
    struct fwd_msg m;
};

/* The input of argument i, checked to lie inside the data. */
static const unsigned char *input(const struct exec *x, int i)
{
    const struct fwd_span *s = &x->h->span[i];
    if (s->off > x->data_len || s->in_len > x->data_len - s->off)
        return NULL;
    return x->data + s->off;
}

/* The socklen_t that argument i (an INOUT(4) argument) carries, 0 when null. */
static int lenptr_value(const struct exec *x, const struct fwd_entry *e, int i, uint32_t *v)
{
    *v = 0;
    if (i >= e->nargs || e->arg[i].kind != FWD_KIND_INOUT)
        return -EINVAL;
    if (x->h->args[i] == 0)
        return 0;
    const unsigned char *in = input(x, i);
    if (!in || x->h->span[i].in_len != sizeof(*v))
        return -EINVAL;
    memcpy(v, in, sizeof(*v));
    return 0;
}

/* Room in the reply for argument i's output of cap bytes; its address. */
static unsigned char *out_area(struct exec *x, int i, size_t cap)
{
    size_t need = sizeof(struct fwd_out) + ALIGN8(cap);
    if (need > x->rroom - x->rlen)
        return NULL;
    x->a[i].seg = x->rlen;
    x->a[i].cap = cap;
    x->a[i].has_out = 1;
    x->rlen += need;
    return x->rdata + x->a[i].seg + sizeof(struct fwd_out);
}

/* iovec lengths at in[0..n) (n of them), checked to add up to at most limit bytes. */
static int iov_lengths(struct exec *x, const unsigned char *in, size_t n, size_t limit,
                       size_t *total)
{
    size_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t len;
        memcpy(&len, in + 8 * k, 8);
        if (len > limit - sum)
            return -EINVAL;
        x->iov[k].iov_len = (size_t)len;
        sum += (size_t)len;
    }
    *total = sum;
    return 0;
}

static void iov_point(struct exec *x, size_t n, unsigned char *base)
{
    for (size_t k = 0; k < n; k++) {
        x->iov[k].iov_base = base;
        base += x->iov[k].iov_len;
    }
}

/* Turn argument i of the request into the pointer the kernel gets. */
static int prepare(struct exec *x, const struct fwd_entry *e, int i, uint64_t *real)
{
    const struct fwd_arg *d = &e->arg[i];
    const struct fwd_span *s = &x->h->span[i];
    uint64_t v = x->h->args[i];
    *real = 0;
    if (d->kind == FWD_KIND_VAL) {
        *real = v;
        return 0;
    }
    if (!IS_POINTER(d->kind)) /* DROP, or beyond the call's arguments */
        return v == 0 && s->off == 0 && s->in_len == 0 && s->out_len == 0 ? 0 : -EINVAL;
    if (v == 0)
        return s->off == 0 && s->in_len == 0 && s->out_len == 0 ? 0 : -EINVAL;
    if (v != 1)
        return -EINVAL;
    const unsigned char *in = input(x, i);
    if (!in)
        return -EINVAL;
    size_t in_len = s->in_len, out_len = s->out_len;
    switch (d->kind) {
    case FWD_KIND_PATH:
        if (in_len == 0 || in_len > FWD_PATH_MAX || out_len != 0 ||
            memchr(in, 0, in_len) != in + in_len - 1)
            return -EINVAL;
        *real = (uintptr_t)in;
        return 0;
    case FWD_KIND_IN:
    case FWD_KIND_OUT:
    case FWD_KIND_INOUT: {
        uint32_t lenval = 0;
        size_t n;
        int err;
        if (d->size_how == FWD_SIZE_LENPTR &&
            (err = lenptr_value(x, e, d->size_arg, &lenval)) < 0)
            return err;
        if ((err = buffer_size(d, x->h->args, lenval, &n)) < 0)
            return -EINVAL;
        size_t want_in = d->kind == FWD_KIND_OUT ? 0 : n, want_out = d->kind == FWD_KIND_IN ? 0 : n;
        if (in_len != want_in || out_len != want_out)
            return -EINVAL;
        if (d->kind == FWD_KIND_IN) {
            *real = (uintptr_t)in;
            return 0;
        }
        unsigned char *area = out_area(x, i, n);
        if (!area)
            return -ENOBUFS;
        if (d->kind == FWD_KIND_INOUT)
            memcpy(area, in, n);
        else if (!(d->flags & FWD_F_RET_SIZED) && d->size_how != FWD_SIZE_LENPTR)
            memset(area, 0, n); /* what the kernel leaves unwritten */
        *real = (uintptr_t)area;
        return 0;
    }
    case FWD_KIND_IOV_IN:
    case FWD_KIND_IOV_OUT: {
        uint64_t n = x->h->args[d->size_arg];
        size_t total;
        if (n > FWD_IOV_MAX || in_len < 8 * n)
            return -EINVAL;
        if (d->kind == FWD_KIND_IOV_IN) {
            if (out_len != 0 || iov_lengths(x, in, n, in_len - 8 * n, &total) < 0 ||
                total != in_len - 8 * n)
                return -EINVAL;
            iov_point(x, n, (unsigned char *)(uintptr_t)(in + 8 * n));
        } else {
            if (in_len != 8 * n || iov_lengths(x, in, n, FWD_MAX_DATA, &total) < 0 ||
                total != out_len)
                return -EINVAL;
            unsigned char *area = out_area(x, i, total);
            if (!area)
                return -ENOBUFS;
            iov_point(x, n, area);
        }
        *real = (uintptr_t)x->iov;
        return 0;
    }
    case FWD_KIND_MSG_IN:
    case FWD_KIND_MSG_OUT: {
        if (in_len < sizeof(x->m))
            return -EINVAL;
        memcpy(&x->m, in, sizeof(x->m));
        const struct fwd_msg *m = &x->m;
        int out = d->kind == FWD_KIND_MSG_OUT;
        if (m->iovlen > FWD_IOV_MAX || m->namelen > FWD_SOCKADDR_MAX ||
            m->controllen > FWD_CONTROL_MAX || (m->present & ~(FWD_MSG_NAME | FWD_MSG_CONTROL)) ||
            (!(m->present & FWD_MSG_NAME) && m->namelen) ||
            (!(m->present & FWD_MSG_CONTROL) && m->controllen))
            return -EINVAL;
        size_t head = sizeof(x->m) + (out ? 0 : m->namelen + m->controllen);
        size_t lens = 8 * (size_t)m->iovlen;
        if (in_len < head + lens)
            return -EINVAL;
        const unsigned char *name = in + sizeof(x->m);
        const unsigned char *control = name + m->namelen;
        size_t total;
        memset(&x->msg, 0, sizeof(x->msg));
        x->msg.msg_iov = x->iov;
        x->msg.msg_iovlen = m->iovlen;
        x->msg.msg_namelen = m->namelen;
        x->msg.msg_controllen = m->controllen;
        x->msg.msg_flags = (int)m->flags;
        if (!out) {
            if (out_len != 0 || iov_lengths(x, in + head, m->iovlen, in_len - head - lens, &total) < 0 ||
                total != in_len - head - lens)
                return -EINVAL;
            iov_point(x, m->iovlen, (unsigned char *)(uintptr_t)(in + head + lens));
            x->msg.msg_name = m->present & FWD_MSG_NAME ? (void *)(uintptr_t)name : NULL;
            x->msg.msg_control = m->present & FWD_MSG_CONTROL ? (void *)(uintptr_t)control : NULL;
        } else {
            if (in_len != head + lens || iov_lengths(x, in + head, m->iovlen, FWD_MAX_DATA, &total) < 0 ||
                out_len != sizeof(x->m) + m->namelen + m->controllen + total)
                return -EINVAL;
            unsigned char *area = out_area(x, i, out_len);
            if (!area)
                return -ENOBUFS;
            unsigned char *a_name = area + sizeof(x->m), *a_control = a_name + m->namelen;
            iov_point(x, m->iovlen, a_control + m->controllen);
            x->msg.msg_name = m->present & FWD_MSG_NAME ? a_name : NULL;
            x->msg.msg_control = m->present & FWD_MSG_CONTROL ? a_control : NULL;
        }
        *real = (uintptr_t)&x->msg;
        return 0;
    }
    }
    return -EINVAL;
}

/* After the call: the bytes of argument i's output that go back (and, for a
 * msghdr, its segment compacted in place). */
static size_t out_length(struct exec *x, const struct fwd_entry *e, int i, long ret)
{
    const struct fwd_arg *d = &e->arg[i];
    size_t cap = x->a[i].cap;
    unsigned char *area = x->rdata + x->a[i].seg + sizeof(struct fwd_out);
    switch (d->kind) {
    case FWD_KIND_OUT:
    case FWD_KIND_INOUT:
        if (d->flags & FWD_F_RET_SIZED) {
            uint64_t mul = d->mul ? d->mul : 1;
            return (uint64_t)ret >= cap / mul ? cap : (size_t)ret * mul;
        }
        if (d->size_how == FWD_SIZE_LENPTR) {
            const struct exec_arg *la = &x->a[d->size_arg];
            uint32_t v = 0;
            if (la->has_out)
                memcpy(&v, x->rdata + la->seg + sizeof(struct fwd_out), sizeof(v));
            return (int32_t)v < 0 ? 0 : (v < cap ? v : cap);
        }
        return cap;
    case FWD_KIND_IOV_OUT:
        return (size_t)ret < cap ? (size_t)ret : cap;
    case FWD_KIND_MSG_OUT: {
        struct fwd_msg m = x->m; /* the capacities */
        size_t data = cap - sizeof(m) - m.namelen - m.controllen;
        size_t name = 0, control = x->msg.msg_controllen;
        if (m.present & FWD_MSG_NAME)
            name = x->msg.msg_namelen < m.namelen ? x->msg.msg_namelen : m.namelen;
        if (control > m.controllen)
            control = m.controllen;
        if ((size_t)ret < data)
            data = (size_t)ret;
        unsigned char *a_name = area + sizeof(m);
        memmove(a_name + name, a_name + m.namelen, control);
        memmove(a_name + name + control, a_name + m.namelen + m.controllen, data);
        struct fwd_msg res = {x->msg.msg_namelen, m.iovlen, control, (uint32_t)x->msg.msg_flags,
                              m.present};
        memcpy(area, &res, sizeof(res));
        return sizeof(m) + name + control + data;
    }
    }
    return 0;
}

size_t fwd_execute(const void *req, size_t len, void *reply, size_t cap)
{
    struct fwd_reply r = {FWD_REPLY_MAGIC, 0, -EINVAL, 0, 0};
    if (cap < sizeof(r))
        return 0;
    struct fwd_request h;
    struct exec x;
    if (len < sizeof(h))
        goto done;
    memcpy(&h, req, sizeof(h));
    if (h.magic != FWD_REQUEST_MAGIC || h.data_len != len - sizeof(h) ||
        h.data_len > FWD_MAX_DATA)
        goto done;
    const struct fwd_entry *e = lookup(h.nr, h.args);
    if (!forwarded(e)) {
        r.ret = -ENOSYS;
        goto done;
    }
    memset(x.a, 0, sizeof(x.a));
    x.h = &h;
    x.data = (const unsigned char *)req + sizeof(h);
    x.data_len = h.data_len;
    x.rdata = (unsigned char *)reply + sizeof(r);
    x.rroom = cap - sizeof(r) < FWD_MAX_DATA ? cap - sizeof(r) : FWD_MAX_DATA;
    x.rlen = 0;
    uint64_t real[6];
    for (int i = 0; i < 6; i++) {
        int err = prepare(&x, e, i, &real[i]);
        if (err < 0) {
            r.ret = err;
            goto done;
        }
    }
    long ret = syscall((long)h.nr, real[0], real[1], real[2], real[3], real[4], real[5]);
    r.ret = ret == -1 ? -errno : ret;
    if (r.ret < 0)
        goto done;
    size_t lens[6];
    for (int i = 0; i < 6; i++) /* first: lengths read from other outputs stay in place */
        lens[i] = x.a[i].has_out ? out_length(&x, e, i, ret) : 0;
    size_t w = 0;
    for (int i = 0; i < 6; i++) {
        if (!x.a[i].has_out)
            continue;
        struct fwd_out o = {(uint32_t)i, (uint32_t)lens[i]};
        memmove(x.rdata + w + sizeof(o), x.rdata + x.a[i].seg + sizeof(o), lens[i]);
        memcpy(x.rdata + w, &o, sizeof(o));
        memset(x.rdata + w + sizeof(o) + lens[i], 0, ALIGN8(lens[i]) - lens[i]);
        w += sizeof(o) + ALIGN8(lens[i]);
        r.nouts++;
    }
    r.data_len = (uint32_t)w;
done:
    memcpy(reply, &r, sizeof(r));
    return sizeof(r) + r.data_len;
}

#endif

/* --------------------------------------------------------------- remote: apply */

long fwd_apply(pid_t pid, long nr, const uint64_t args[6], const void *reply, size_t len)
{
    struct fwd_reply r;
    if (len < sizeof(r))
        return -EPROTO;
    memcpy(&r, reply, sizeof(r));
    if (r.magic != FWD_REPLY_MAGIC || r.data_len != len - sizeof(r) || r.ret < -4095)
        return -EPROTO;
    if (r.ret < 0)
        return r.nouts == 0 && r.data_len == 0 ? r.ret : -EPROTO;
    struct plan p;
    int err = plan(pid, nr, args, &p);
    if (err < 0)
        return err;
    const unsigned char *data = (const unsigned char *)reply + sizeof(r);
    size_t off = 0;
    uint32_t seen = 0;
    for (int i = 0; i < p.e->nargs; i++) {
        const struct fwd_arg *d = &p.e->arg[i];
        if (!IS_OUTPUT(d->kind) || !p.a[i].addr)
            continue;
        struct fwd_out o;
        if (r.data_len - off < sizeof(o))
            return -EPROTO;
        memcpy(&o, data + off, sizeof(o));
        off += sizeof(o);
        if (o.arg != (uint32_t)i || o.len > p.a[i].out || o.len > r.data_len - off)
            return -EPROTO;
        const unsigned char *bytes = data + off;
        switch (d->kind) {
        case FWD_KIND_OUT:
        case FWD_KIND_INOUT:
            err = write_mem(pid, p.a[i].addr, bytes, o.len);
            break;
        case FWD_KIND_IOV_OUT:
            err = vec_io(pid, 1, (void *)(uintptr_t)bytes, o.len, p.iov, p.niov);
            break;
        case FWD_KIND_MSG_OUT: {
            struct fwd_msg m;
            if (o.len < sizeof(m))
                return -EPROTO;
            memcpy(&m, bytes, sizeof(m));
            size_t name = 0;
            if (p.m.present & FWD_MSG_NAME)
                name = m.namelen < p.m.namelen ? m.namelen : p.m.namelen;
            if (m.controllen > p.m.controllen || o.len - sizeof(m) < name + m.controllen)
                return -EPROTO;
            size_t data_bytes = o.len - sizeof(m) - name - m.controllen;
            if (data_bytes > p.vec_total)
                return -EPROTO;
            const unsigned char *b = bytes + sizeof(m);
            uint64_t controllen = m.controllen;
            int flags = (int)m.flags;
            if ((err = write_mem(pid, (uintptr_t)p.msg.msg_name, b, name)) < 0 ||
                (err = write_mem(pid, (uintptr_t)p.msg.msg_control, b + name, m.controllen)) < 0 ||
                (err = vec_io(pid, 1, (void *)(uintptr_t)(b + name + m.controllen), data_bytes,
                              p.iov, p.niov)) < 0)
                return err;
            if (p.m.present & FWD_MSG_NAME &&
                (err = write_mem(pid, p.a[i].addr + offsetof(struct msghdr, msg_namelen),
                                 &m.namelen, sizeof(m.namelen))) < 0)
                return err;
            if ((err = write_mem(pid, p.a[i].addr + offsetof(struct msghdr, msg_controllen),
                                 &controllen, sizeof(controllen))) < 0)
                return err;
            err = write_mem(pid, p.a[i].addr + offsetof(struct msghdr, msg_flags), &flags,
                            sizeof(flags));
            break;
        }
        }
        if (err < 0)
            return err;
        off += ALIGN8(o.len);
        seen++;
        if (off > r.data_len)
            return -EPROTO;
    }
    if (seen != r.nouts || off != r.data_len)
        return -EPROTO;
    return r.ret;
}
