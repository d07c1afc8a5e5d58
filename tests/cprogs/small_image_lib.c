/* small_image_lib.c - a shared library for tests/test_small_images.py: a
 * read-only table of TABLE_PAGES pages filled with SEED (-DSEED=N), so that a
 * library rebuilt with another seed differs from the one a checkpoint referred to. */
#include <stddef.h>

#ifndef SEED
#define SEED 1
#endif
#define TABLE_PAGES 128

const unsigned char small_table[TABLE_PAGES * 4096] __attribute__((aligned(4096))) = {
    [0 ... TABLE_PAGES * 4096 - 1] = SEED,
};

size_t small_table_bytes(void) { return sizeof(small_table); }
