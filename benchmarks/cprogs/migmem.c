/* migmem.c - a program to migrate: MIB MiB resident, and its longest pause.
 *
 *   migmem MIB [RATE]
 *
 * Fills MIB MiB of anonymous memory with incompressible (xorshift) data,
 * prints "ready SUM" (a checksum of it), then runs a progress loop that
 * stamps CLOCK_MONOTONIC (the vDSO: no system call, so nothing is forwarded
 * once it runs elsewhere) and keeps the longest gap between two stamps: the
 * time it did not run, e.g. while it was moved to another node.  On SIGUSR1
 * it leaves the loop, sums the memory again and prints
 *   "done GAP_START_NS GAP_END_NS SUM"
 * (CLOCK_MONOTONIC, the same clock on every node of a test cluster).
 * With RATE (MiB/s), the loop also writes a word in RATE MiB of random pages
 * a second, keeping the checksum up to date; SUM is then the memory summed
 * again, and "BAD EXPECTED SUM" (exit status 1) if it is not what was written.
 * Exit status 0, 1 memory lost, 2 for bad arguments, 3 for a failed call. */
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

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t checksum(const uint64_t *mem, size_t words)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < words; i++)
        sum += mem[i] * (i | 1);
    return sum;
}

int main(int argc, char **argv)
{
    long mib = argc == 2 || argc == 3 ? atol(argv[1]) : 0;
    double rate = argc == 3 ? atof(argv[2]) : 0;
    if (mib < 1 || rate < 0)
        return 2;
    size_t words = (size_t)mib << 17;
    uint64_t *mem = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    if (mem == MAP_FAILED) {
        perror("mmap");
        return 3;
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < words; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mem[i] = x;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, NULL) < 0) {
        perror("sigaction");
        return 3;
    }
    uint64_t sum = checksum(mem, words), writes = 0;
    const double per_ns = rate * 256 / 1e9; /* pages a nanosecond */
    printf("ready %llx\n", (unsigned long long)sum);
    if (fflush(stdout) != 0)
        return 3;
    uint64_t last = now_ns(), gap = 0, gap_start = last, gap_end = last, began = last;
    while (!stop) {
        uint64_t t = now_ns();
        while ((double)(t - began) * per_ns > (double)writes) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t i = (size_t)(x % (words / 512)) * 512 + (x >> 48) % 512;
            sum += (x - mem[i]) * (i | 1);
            mem[i] = x;
            writes++;
        }
        if (t - last > gap) {
            gap = t - last;
            gap_start = last;
            gap_end = t;
        }
        last = t;
    }
    uint64_t found = checksum(mem, words);
    if (found != sum) {
        printf("BAD %llx %llx\n", (unsigned long long)sum, (unsigned long long)found);
        return fflush(stdout) == 0 ? 1 : 3;
    }
    printf("done %llu %llu %llx\n", (unsigned long long)gap_start, (unsigned long long)gap_end,
           (unsigned long long)found);
    return fflush(stdout) == 0 ? 0 : 3;
}
