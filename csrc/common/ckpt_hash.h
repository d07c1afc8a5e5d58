/* ckpt_hash.h - mxh64, the checkpoint image checksum; Python calls this one too
 * (mosix/native/checksum.py, through the cffi binding).  No libc: the restorer
 * uses it.  Streaming: init, update with any split, final.
 *
 * Four 64-bit lanes take 8-byte little-endian words in turn; each step is
 * lane = rotl(lane ^ word, 27) * P1, a bijection of the word, so any change of
 * one word changes its lane.  A tail shorter than a word is zero-padded and the
 * length is mixed into the result, which a final avalanche spreads over all 64
 * bits.  It detects corruption; it is not a cryptographic hash. */
#ifndef MOSIX_CKPT_HASH_H
#define MOSIX_CKPT_HASH_H

#include <stddef.h>
#include <stdint.h>

#define MXH_P1 0x9FB21C651E98DF25ull
#define MXH_P2 0xC2B2AE3D27D4EB4Full
#define MXH_P3 0x165667B19E3779F9ull

struct mxh64 {
    uint64_t v[4];
    uint64_t seed, total;
    unsigned char buf[32]; /* bytes not yet a full 32-byte block */
    unsigned used;
};

static inline uint64_t mxh_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t mxh_avalanche(uint64_t x)
{
    x ^= x >> 33;
    x *= MXH_P2;
    x ^= x >> 29;
    x *= MXH_P3;
    x ^= x >> 32;
    return x;
}

static inline uint64_t mxh_load(const unsigned char *p)
{
    uint64_t w;
    __builtin_memcpy(&w, p, 8); /* little-endian host */
    return w;
}

static inline void mxh_init(struct mxh64 *h, uint64_t seed)
{
    h->v[0] = 0x243F6A8885A308D3ull ^ seed;
    h->v[1] = 0x13198A2E03707344ull ^ seed;
    h->v[2] = 0xA4093822299F31D0ull ^ seed;
    h->v[3] = 0x082EFA98EC4E6C89ull ^ seed;
    h->seed = seed;
    h->total = 0;
    h->used = 0;
}

static inline void mxh_blocks(uint64_t v[4], const unsigned char *p, size_t blocks)
{
    uint64_t a = v[0], b = v[1], c = v[2], d = v[3];
    for (size_t i = 0; i < blocks; i++, p += 32) {
        a = mxh_rotl(a ^ mxh_load(p), 27) * MXH_P1;
        b = mxh_rotl(b ^ mxh_load(p + 8), 27) * MXH_P1;
        c = mxh_rotl(c ^ mxh_load(p + 16), 27) * MXH_P1;
        d = mxh_rotl(d ^ mxh_load(p + 24), 27) * MXH_P1;
    }
    v[0] = a;
    v[1] = b;
    v[2] = c;
    v[3] = d;
}

static inline void mxh_update(struct mxh64 *h, const void *data, size_t n)
{
    const unsigned char *p = data;
    h->total += n;
    if (h->used) {
        while (n && h->used < 32) {
            h->buf[h->used++] = *p++;
            n--;
        }
        if (h->used < 32)
            return;
        mxh_blocks(h->v, h->buf, 1);
        h->used = 0;
    }
    mxh_blocks(h->v, p, n / 32);
    p += n - n % 32;
    n %= 32;
    for (size_t i = 0; i < n; i++)
        h->buf[i] = p[i];
    h->used = (unsigned)n;
}

static inline uint64_t mxh_final(const struct mxh64 *h)
{
    uint64_t v[4] = {h->v[0], h->v[1], h->v[2], h->v[3]};
    if (h->used) {
        unsigned char tail[32] = {0};
        for (unsigned i = 0; i < h->used; i++)
            tail[i] = h->buf[i];
        for (unsigned i = 0; i * 8 < h->used; i++)
            v[i] = mxh_rotl(v[i] ^ mxh_load(tail + 8 * i), 27) * MXH_P1;
    }
    uint64_t x = (h->total * MXH_P2) ^ h->seed;
    for (int i = 0; i < 4; i++)
        x = mxh_rotl(x ^ mxh_avalanche(v[i]), 23) * MXH_P1 + MXH_P3;
    return mxh_avalanche(x);
}

static inline uint64_t mxh64(const void *data, size_t n, uint64_t seed)
{
    struct mxh64 h;
    mxh_init(&h, seed);
    mxh_update(&h, data, n);
    return mxh_final(&h);
}

#endif
