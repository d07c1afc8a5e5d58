/* forward_request.c - the remote side of the marshaller: a forwarded call's
 * request from the process's memory (fwd_request) and its reply's outputs
 * written back (fwd_apply); see forward_marshal.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "forward_marshal.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* A NUL-terminated string of at most FWD_PATH_MAX bytes: its length with the NUL. */
static long read_path(pid_t pid, uint64_t addr, char *dst)
{
    size_t got = 0;
    while (got < FWD_PATH_MAX) {
        size_t chunk = 4096 - ((addr + got) & 4095);
        if (chunk > FWD_PATH_MAX - got)
            chunk = FWD_PATH_MAX - got;
        int err = fwd_read_mem(pid, dst + got, addr + got, chunk);
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
    int err = fwd_read_mem(pid, p->iov, addr, n * sizeof(struct iovec));
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
    int err = fwd_read_mem(pid, &p->msg, addr, sizeof(p->msg));
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
    const struct fwd_entry *e = fwd_lookup(nr, args);
    if (!e)
        return -ENOSYS;
    if (e->placement == FWD_PLACE_UNFORWARDABLE)
        return -(e->error ? e->error : ENOSYS);
    if (!fwd_forwarded(e))
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
                (err = fwd_read_mem(pid, &lenval, args[d->size_arg], sizeof(lenval))) < 0)
                return err;
            size_t n = 0;
            err = fwd_buffer_size(d, p->args, lenval, &n);
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
            err = fwd_read_mem(pid, at, pa->addr, in);
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
                if ((err = fwd_read_mem(pid, w, (uintptr_t)p.msg.msg_name, p.m.namelen)) < 0)
                    return err;
                w += p.m.namelen;
                if ((err = fwd_read_mem(pid, w, (uintptr_t)p.msg.msg_control, p.m.controllen)) < 0)
                    return err;
                w += p.m.controllen;
            }
            for (size_t k = 0; k < p.niov; k++) {
                uint64_t len = p.iov[k].iov_len;
                memcpy(w, &len, 8);
                w += 8;
            }
            if (d->kind == FWD_KIND_IOV_IN || d->kind == FWD_KIND_MSG_IN)
                err = fwd_vec_io(pid, 0, w, p.vec_total, p.iov, p.niov);
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
            err = fwd_write_mem(pid, p.a[i].addr, bytes, o.len);
            break;
        case FWD_KIND_IOV_OUT:
            err = fwd_vec_io(pid, 1, (void *)(uintptr_t)bytes, o.len, p.iov, p.niov);
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
            if ((err = fwd_write_mem(pid, (uintptr_t)p.msg.msg_name, b, name)) < 0 ||
                (err = fwd_write_mem(pid, (uintptr_t)p.msg.msg_control, b + name, m.controllen)) < 0 ||
                (err = fwd_vec_io(pid, 1, (void *)(uintptr_t)(b + name + m.controllen), data_bytes,
                              p.iov, p.niov)) < 0)
                return err;
            if (p.m.present & FWD_MSG_NAME &&
                (err = fwd_write_mem(pid, p.a[i].addr + offsetof(struct msghdr, msg_namelen),
                                 &m.namelen, sizeof(m.namelen))) < 0)
                return err;
            if ((err = fwd_write_mem(pid, p.a[i].addr + offsetof(struct msghdr, msg_controllen),
                                 &controllen, sizeof(controllen))) < 0)
                return err;
            err = fwd_write_mem(pid, p.a[i].addr + offsetof(struct msghdr, msg_flags), &flags,
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
