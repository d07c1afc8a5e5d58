/* bigmem MIB: touch MIB MiB of anonymous memory with incompressible data, print
 * "ready", then wait for one byte on stdin and answer "ok" (checksum of the
 * memory, so a restored copy proves its pages came back). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t bytes = (size_t)atol(argc > 1 ? argv[1] : "1") << 20;
    uint64_t *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 2;
    uint64_t x = 0x9E3779B97F4A7C15ull, sum = 0;
    for (size_t i = 0; i < bytes / 8; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mem[i] = x;
    }
    printf("ready\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1)
        return 3;
    for (size_t i = 0; i < bytes / 8; i++)
        sum += mem[i];
    printf("ok %llx\n", (unsigned long long)sum);
    return 0;
}
