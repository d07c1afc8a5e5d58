/* small_image.c - for tests/test_small_images.py: ANON_KIB KiB of anonymous memory
 * filled with a pattern, and every page of small_image_lib.so's read-only table
 * read (file pages, never written).  Prints "paused", waits for a byte on stdin,
 * then prints "done SUM" (a checksum of both, so a restored copy proves its pages,
 * stored and referenced, came back) and exits with status 3. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define ANON_KIB 256

extern const unsigned char small_table[];
size_t small_table_bytes(void);

static uint64_t sum_of(const unsigned char *p, size_t n, uint64_t sum)
{
    for (size_t i = 0; i < n; i++)
        sum = sum * 31 + p[i];
    return sum;
}

int main(void)
{
    size_t n = (size_t)ANON_KIB << 10;
    unsigned char *mem = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 2;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mem[i] = (unsigned char)x;
    }
    uint64_t before = sum_of(small_table, small_table_bytes(), 0);
    printf("paused %llx\n", (unsigned long long)before);
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1)
        return 4;
    uint64_t sum = sum_of(small_table, small_table_bytes(), sum_of(mem, n, 0));
    printf("done %llx\n", (unsigned long long)sum);
    return 3;
}
