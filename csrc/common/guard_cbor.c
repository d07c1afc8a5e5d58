/* guard_cbor.c - the guard's CBOR encoder and reply decoder (see guard_cbor.h). */
#include "guard_cbor.h"

#include "mosix_names.h"

#include <string.h>

#define MAJOR_UINT 0u
#define MAJOR_NEGINT 1u
#define MAJOR_BYTES 2u
#define MAJOR_TEXT 3u
#define MAJOR_ARRAY 4u
#define MAJOR_MAP 5u
#define MAJOR_TAG 6u
#define MAJOR_SIMPLE 7u
#define SIMPLE_NULL 0xf6u
#define MAX_DEPTH 16

/* ------------------------------------------------------------ encoding */

static void put_bytes(struct cbor_out *o, const void *p, size_t n)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* The initial byte of ``major`` with argument ``v``, in its shortest form. */
static void put_head(struct cbor_out *o, unsigned major, uint64_t v)
{
    unsigned char h[9];
    size_t n;
    if (v < 24) {
        h[0] = (unsigned char)(major << 5 | v);
        n = 1;
    } else {
        unsigned width = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
        unsigned info = width == 1 ? 24 : width == 2 ? 25 : width == 4 ? 26 : 27;
        h[0] = (unsigned char)(major << 5 | info);
        for (unsigned i = 0; i < width; i++)
            h[1 + i] = (unsigned char)(v >> (8 * (width - 1 - i)));
        n = 1 + width;
    }
    put_bytes(o, h, n);
}

void cbor_put_map(struct cbor_out *o, size_t pairs)
{
    put_head(o, MAJOR_MAP, pairs);
}

void cbor_put_text(struct cbor_out *o, const char *s, size_t len)
{
    put_head(o, MAJOR_TEXT, len);
    put_bytes(o, s, len);
}

void cbor_put_cstr(struct cbor_out *o, const char *s)
{
    cbor_put_text(o, s, strlen(s));
}

void cbor_put_bytes(struct cbor_out *o, const void *p, size_t len)
{
    put_head(o, MAJOR_BYTES, len);
    put_bytes(o, p, len);
}

void cbor_put_uint(struct cbor_out *o, uint64_t v)
{
    put_head(o, MAJOR_UINT, v);
}

void cbor_put_null(struct cbor_out *o)
{
    unsigned char b = SIMPLE_NULL;
    put_bytes(o, &b, 1);
}

/* ------------------------------------------------------------ decoding */

struct cbor_in {
    const unsigned char *p, *end;
};

/* One item's head: its major type and argument.  Definite lengths only. */
static int get_head(struct cbor_in *in, unsigned *major, uint64_t *v)
{
    if (in->p >= in->end)
        return -1;
    unsigned char ib = *in->p++;
    unsigned info = ib & 0x1fu;
    *major = ib >> 5;
    if (info < 24) {
        *v = info;
        return 0;
    }
    if (info > 27)
        return -1; /* reserved, or indefinite length / break: odd for this protocol */
    size_t width = (size_t)1 << (info - 24);
    if ((size_t)(in->end - in->p) < width)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < width; i++)
        x = x << 8 | in->p[i];
    in->p += width;
    *v = x;
    return 0;
}

static int skip_item(struct cbor_in *in, int depth);

static int skip_items(struct cbor_in *in, uint64_t count, int depth)
{
    for (uint64_t i = 0; i < count; i++) /* each item takes a byte at least */
        if (skip_item(in, depth) != 0)
            return -1;
    return 0;
}

static int skip_item(struct cbor_in *in, int depth)
{
    unsigned major;
    uint64_t v;
    if (depth > MAX_DEPTH || get_head(in, &major, &v) != 0)
        return -1;
    switch (major) {
    case MAJOR_UINT:
    case MAJOR_NEGINT:
    case MAJOR_SIMPLE:
        return 0;
    case MAJOR_BYTES:
    case MAJOR_TEXT:
        if (v > (uint64_t)(in->end - in->p))
            return -1;
        in->p += v;
        return 0;
    case MAJOR_ARRAY:
        return skip_items(in, v, depth + 1);
    case MAJOR_MAP:
        if (v > UINT64_MAX / 2)
            return -1;
        return skip_items(in, 2 * v, depth + 1);
    case MAJOR_TAG:
        return skip_item(in, depth + 1);
    }
    return -1;
}

/* A text item: its bytes in place. */
static int get_text(struct cbor_in *in, const unsigned char **s, size_t *len)
{
    unsigned major;
    uint64_t v;
    if (get_head(in, &major, &v) != 0 || major != MAJOR_TEXT || v > (uint64_t)(in->end - in->p))
        return -1;
    *s = in->p;
    *len = (size_t)v;
    in->p += v;
    return 0;
}

/* A text value into ``out`` (cut to its size, but the whole of "op" must fit). */
static int take_text(struct cbor_in *in, char *out, size_t cap, int must_fit, int *seen)
{
    const unsigned char *s;
    size_t len;
    if (*seen || get_text(in, &s, &len) != 0 || memchr(s, '\0', len) != NULL)
        return -1;
    if (len >= cap) {
        if (must_fit)
            return -1;
        len = cap - 1;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    *seen = 1;
    return 0;
}

static int key_is(const unsigned char *k, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(k, name, len) == 0;
}

int cbor_decode_reply(const unsigned char *buf, size_t len, struct agent_reply *reply)
{
    struct cbor_in in = {buf, buf + len};
    unsigned major;
    uint64_t pairs;
    memset(reply, 0, sizeof(*reply));
    if (get_head(&in, &major, &pairs) != 0 || major != MAJOR_MAP || pairs > len)
        return -1;
    int seen_op = 0, seen_failed = 0, seen_error = 0;
    for (uint64_t i = 0; i < pairs; i++) {
        const unsigned char *k;
        size_t klen;
        int r;
        if (get_text(&in, &k, &klen) != 0)
            return -1;
        if (key_is(k, klen, MOSIX_MSG_KEY_OP))
            r = take_text(&in, reply->op, sizeof(reply->op), 1, &seen_op);
        else if (key_is(k, klen, MOSIX_MSG_CHECKPOINTED_FAILED))
            r = take_text(&in, reply->failed, sizeof(reply->failed), 0, &seen_failed);
        else if (key_is(k, klen, MOSIX_MSG_REFUSED_ERROR))
            r = take_text(&in, reply->error, sizeof(reply->error), 0, &seen_error);
        else
            r = skip_item(&in, 1);
        if (r != 0)
            return -1;
    }
    return seen_op && in.p == in.end ? 0 : -1;
}
