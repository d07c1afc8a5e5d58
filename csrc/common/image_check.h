/* image_check.h - the checks of a checkpoint image's file header and record
 * headers, for Python (mosix/native/image_header.py, through the cffi binding
 * built by mosix/native/cffi_build.py): the C structs of the generated format
 * read the bytes, mxh64 checks them.  The verdicts are in the order the
 * checks are made; the caller words them.  No libc. */
#ifndef MOSIX_IMAGE_CHECK_H
#define MOSIX_IMAGE_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt_format.h"
#include "ckpt_hash.h"

enum mosix_image_verdict {
    MOSIX_IMAGE_OK,
    MOSIX_IMAGE_NOT_IMAGE, /* no magic */
    MOSIX_IMAGE_TRUNCATED, /* fewer bytes than the header */
    MOSIX_IMAGE_DAMAGED,   /* the header's checksum */
    MOSIX_IMAGE_VERSION,   /* another format version */
    MOSIX_IMAGE_ARCH,      /* another architecture */
    MOSIX_IMAGE_GEOMETRY,  /* another page size or header size */
    MOSIX_IMAGE_SEQ,       /* a record out of order */
    MOSIX_IMAGE_KIND,      /* a record of no known kind */
    MOSIX_IMAGE_LENGTH,    /* a record longer than any the capturer writes */
};

static inline void mosix_image_copy(void *to, const unsigned char *from, size_t n)
{
    unsigned char *t = to;
    for (size_t i = 0; i < n; i++)
        t[i] = from[i];
}

/* The file header in raw[0..n): its verdict; *out holds it when OK. */
static inline int mosix_image_file_header(const unsigned char *raw, size_t n,
                                          struct mosix_ckpt_file_header *out)
{
    static const char magic[] = MOSIX_CKPT_MAGIC;
    for (size_t i = 0; i < sizeof(magic) - 1; i++)
        if (i >= n || raw[i] != (unsigned char)magic[i])
            return MOSIX_IMAGE_NOT_IMAGE;
    if (n != sizeof(*out))
        return MOSIX_IMAGE_TRUNCATED;
    mosix_image_copy(out, raw, sizeof(*out));
    if (mxh64(out, offsetof(struct mosix_ckpt_file_header, head_hash), 0) != out->head_hash)
        return MOSIX_IMAGE_DAMAGED;
    if (out->version < MOSIX_CKPT_OLDEST_VERSION || out->version > MOSIX_CKPT_VERSION)
        return MOSIX_IMAGE_VERSION;
    if (out->arch != MOSIX_CKPT_ARCH)
        return MOSIX_IMAGE_ARCH;
    if (out->page_size != MOSIX_CKPT_PAGE_SIZE || out->header_size != sizeof(*out))
        return MOSIX_IMAGE_GEOMETRY;
    return MOSIX_IMAGE_OK;
}

/* Record ``seq``'s header in raw[0..n): its verdict; *out holds it when OK or
 * when the verdict is about a field of it (SEQ, KIND, LENGTH). */
static inline int mosix_image_record_header(const unsigned char *raw, size_t n, uint32_t seq,
                                            struct mosix_ckpt_record_header *out)
{
    if (n != sizeof(*out))
        return MOSIX_IMAGE_TRUNCATED;
    mosix_image_copy(out, raw, sizeof(*out));
    if (mxh64(out, offsetof(struct mosix_ckpt_record_header, head_hash), 0) != out->head_hash)
        return MOSIX_IMAGE_DAMAGED;
    if (out->seq != seq)
        return MOSIX_IMAGE_SEQ;
    /* the kinds a head reader meets: up to END, and PRIVATE (before REGS) */
    if (out->kind == 0 || (out->kind > MOSIX_CKPT_KIND_END && out->kind != MOSIX_CKPT_KIND_PRIVATE))
        return MOSIX_IMAGE_KIND;
    if (out->length > MOSIX_CKPT_MAX_RECORD_BYTES)
        return MOSIX_IMAGE_LENGTH;
    return MOSIX_IMAGE_OK;
}

#endif
