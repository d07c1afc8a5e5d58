/* restore_hash.c - mxh64 (csrc/ckpt_hash.h) as a shared library, so the tests
 * can checksum large synthetic images at C speed (ctypes). */
#include <stddef.h>
#include <stdint.h>

#include "ckpt_hash.h"

uint64_t restore_test_mxh64(const void *data, size_t n, uint64_t seed)
{
    return mxh64(data, n, seed);
}
