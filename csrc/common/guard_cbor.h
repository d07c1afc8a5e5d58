/* guard_cbor.h - the little CBOR the guard speaks with the node agent.
 *
 * Exactly what mosix/protocol.py's frames need from C: the encoder writes one
 * definite-length map with text keys and text, byte-string, unsigned or null
 * values; the decoder walks a reply map, well-formed and definite-length only
 * (cbor2 never writes anything else), and anything odd makes it fail. */
#ifndef MOSIX_GUARD_CBOR_H
#define MOSIX_GUARD_CBOR_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ encoding */

struct cbor_out {
    unsigned char *buf;
    size_t cap, len;
    int overflow; /* set when something did not fit: the frame is unusable */
};

void cbor_put_map(struct cbor_out *o, size_t pairs);
void cbor_put_text(struct cbor_out *o, const char *s, size_t len);
void cbor_put_cstr(struct cbor_out *o, const char *s);
void cbor_put_bytes(struct cbor_out *o, const void *p, size_t len); /* a byte string */
void cbor_put_uint(struct cbor_out *o, uint64_t v);
void cbor_put_null(struct cbor_out *o);

/* ------------------------------------------------------------ decoding */

/* What the guard wants from a reply: its "op" and the "failed" and "error"
 * texts (empty when absent), each cut to the buffer's size. */
#define CBOR_SHORT_TEXT 256
struct agent_reply {
    char op[32];
    char failed[CBOR_SHORT_TEXT];
    char error[CBOR_SHORT_TEXT];
};

/* Decode one map of ``len`` bytes into ``reply``.  Returns 0, or -1 when the
 * bytes are not exactly one well-formed definite-length map with text keys,
 * "op" present, and "op", "failed" and "error" (each at most once) texts
 * without NUL. */
int cbor_decode_reply(const unsigned char *buf, size_t len, struct agent_reply *reply);

#endif
