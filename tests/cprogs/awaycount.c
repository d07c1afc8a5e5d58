/* awaycount.c - the workload of the tests of checkpoints taken away from home.
 *
 * Usage: awaycount OUT N K GATE
 *   writes N lines "i value" to OUT (each value depends on all before it and
 *   on a 4 MiB heap table, so a wrong memory image shows); after line K it
 *   prints "at K" on stdout and waits, computing, until the file GATE exists
 *   (looked for every 10 ms); at the end "done" on stdout, exit status 7. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TABLE (4u << 20)

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    long n = atol(argv[2]), k = atol(argv[3]);
    int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    unsigned char *table = malloc(TABLE);
    if (out < 0 || table == NULL)
        return 2;
    for (uint32_t i = 0; i < TABLE; i++)
        table[i] = (unsigned char)(i * 2654435761u >> 24);
    uint64_t x = 88172645463325252ull;
    for (long i = 1; i <= n; i++) {
        for (int r = 0; r < 20000; r++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            table[x % TABLE] ^= (unsigned char)x;
            x += table[(x >> 20) % TABLE];
        }
        char line[64];
        int len = snprintf(line, sizeof(line), "%ld %llu\n", i, (unsigned long long)x);
        if (write(out, line, (size_t)len) != len)
            return 3;
        if (i == k) {
            printf("at %ld\n", k);
            fflush(stdout);
            struct timespec tick = {0, 10 * 1000 * 1000};
            while (access(argv[4], F_OK) != 0)
                nanosleep(&tick, NULL);
        }
    }
    if (close(out) != 0)
        return 3;
    printf("done\n");
    return 7;
}
