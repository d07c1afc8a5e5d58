/* dirtier.c - a program that keeps writing its memory, and can tell whether
 * that memory is still exactly what it wrote (for live migration's rounds).
 *
 *   dirtier MIB
 *
 * Fills MIB MiB of anonymous memory, prints "ready", then until SIGUSR1
 * writes random words (about 40 MiB/s of pages), now and then a page of zeros
 * and drops a page (MADV_DONTNEED: it reads zeros after), keeping a running
 * checksum of what the memory should hold: every write updates it.  On
 * SIGUSR1 it sums the memory again and prints "done WRITES SUM" if the two
 * agree, "BAD WRITES EXPECTED FOUND" otherwise (a write lost in a move).
 * Exit status 0, 1 when they differ, 2 bad arguments, 3 a failed call. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u
#define WORDS_PER_PAGE (PAGE / 8)

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t term(size_t i, uint64_t v) { return (v ^ (i * 0x9E3779B97F4A7C15ull)) * (i | 1); }

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv)
{
    long mib = argc == 2 ? atol(argv[1]) : 0;
    if (mib < 1)
        return 2;
    size_t words = (size_t)mib << 17, pages = words / WORDS_PER_PAGE;
    uint64_t *mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 3;
    }
    uint64_t x = 0x2545F4914F6CDD1Dull, sum = 0;
    for (size_t i = 0; i < words; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mem[i] = x;
        sum += term(i, x);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, NULL) < 0) {
        perror("sigaction");
        return 3;
    }
    printf("ready\n");
    if (fflush(stdout) != 0)
        return 3;
    uint64_t writes = 0, start = now_ns();
    const double per_ns = 40.0 * 256 / 1e9; /* pages per ns: 40 MiB/s */
    while (!stop) {
        if ((double)(now_ns() - start) * per_ns < (double)writes)
            continue;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t p = (size_t)(x % pages), w = p * WORDS_PER_PAGE + (x >> 40) % WORDS_PER_PAGE;
        if (writes % 997 == 0 || writes % 1499 == 0) { /* a page of zeros, or dropped */
            for (size_t i = p * WORDS_PER_PAGE; i < (p + 1) * WORDS_PER_PAGE; i++)
                sum += term(i, 0) - term(i, mem[i]);
            if (writes % 997 == 0)
                memset(&mem[p * WORDS_PER_PAGE], 0, PAGE);
            else if (madvise(&mem[p * WORDS_PER_PAGE], PAGE, MADV_DONTNEED) < 0) {
                perror("madvise");
                return 3;
            }
        } else {
            sum += term(w, x) - term(w, mem[w]);
            mem[w] = x;
        }
        writes++;
    }
    uint64_t found = 0;
    for (size_t i = 0; i < words; i++)
        found += term(i, mem[i]);
    if (found != sum) {
        printf("BAD %llu %llx %llx\n", (unsigned long long)writes, (unsigned long long)sum,
               (unsigned long long)found);
        return fflush(stdout) == 0 ? 1 : 3;
    }
    printf("done %llu %llx\n", (unsigned long long)writes, (unsigned long long)sum);
    return fflush(stdout) == 0 ? 0 : 3;
}
