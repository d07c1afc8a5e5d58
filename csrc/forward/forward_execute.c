/* forward_execute.c - the home side of the marshaller: a request checked
 * against the table and run (fwd_execute), the reply with its outputs; see
 * forward_marshal.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "forward_marshal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* -------------------------------------------------------------- home: execute */

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
        if ((err = fwd_buffer_size(d, x->h->args, lenval, &n)) < 0)
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
    const struct fwd_entry *e = fwd_lookup(h.nr, h.args);
    if (!fwd_forwarded(e)) {
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
