/* zmem.c - a program holding compressible and incompressible memory, for the
 * compressed migration images (tests/test_compressed_migration.py,
 * benchmarks/bench_compression.py).
 *
 *   zmem TEXT_MIB RANDOM_MIB
 *
 * Fills TEXT_MIB MiB with text-like lines (numbered, a few words: zstd takes
 * them to a fraction) and RANDOM_MIB MiB with pseudo-random words (nothing to
 * gain), prints "ready SUM" (a checksum of both), then until SIGUSR1 sleeps;
 * then sums its memory again and prints "done SUM".  Exit status 0, 1 when the
 * sums differ (memory lost or changed in a move), 2 bad arguments, 3 a failed
 * call. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int main(int argc, char **argv)
{
    long text_mib = argc == 3 ? atol(argv[1]) : -1, random_mib = argc == 3 ? atol(argv[2]) : -1;
    if (text_mib < 0 || random_mib < 0 || text_mib + random_mib < 1)
        return 2;
    size_t text = (size_t)text_mib << 20, rnd = (size_t)random_mib << 20;
    unsigned char *mem = mmap(NULL, text + rnd, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 3;
    }
    static const char *words[] = {"migrate", "home", "node", "image", "page", "deputy",
                                  "remote", "cluster", "the", "of", "a", "process"};
    size_t at = 0;
    for (unsigned long line = 0; at < text; line++) {
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "%08lu %s %s %s\n", line, words[line % 12],
                         words[(line / 12) % 12], words[(line * 7) % 12]);
        for (int i = 0; i < n && at < text; i++)
            mem[at++] = (unsigned char)buf[i];
    }
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i + 8 <= rnd; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(mem + text + i, &x, 8);
    }
    uint64_t before = checksum(mem, text + rnd);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, NULL) < 0) {
        perror("sigaction");
        return 3;
    }
    printf("ready %016llx\n", (unsigned long long)before);
    if (fflush(stdout) != 0)
        return 3;
    struct timespec tick = {0, 20 * 1000 * 1000};
    while (!stop)
        nanosleep(&tick, NULL);
    uint64_t after = checksum(mem, text + rnd);
    printf("done %016llx\n", (unsigned long long)after);
    return after == before ? 0 : 1;
}
