/* idlemem.c - a program that holds memory and writes none of it while it waits
 * (for live migration: its move should send that memory once).
 *
 *   idlemem MIB
 *
 * Fills MIB MiB of anonymous memory with non-zero (xorshift) words, prints
 * "ready SUM" (a checksum of it), then waits in sigsuspend until SIGUSR1,
 * sums the memory again and prints "done SUM".  Exit status 0, 1 when the
 * sums differ, 2 bad arguments, 3 a failed call. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
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
    long mib = argc == 2 ? atol(argv[1]) : 0;
    if (mib < 1)
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
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, NULL) < 0 || sigprocmask(SIG_BLOCK, &usr1, &old) < 0) {
        perror("sigaction");
        return 3;
    }
    uint64_t sum = checksum(mem, words);
    printf("ready %llx\n", (unsigned long long)sum);
    if (fflush(stdout) != 0)
        return 3;
    while (!stop)
        sigsuspend(&old); /* returns on a signal handled (EINTR) */
    uint64_t found = checksum(mem, words);
    printf("%s %llx\n", found == sum ? "done" : "BAD", (unsigned long long)found);
    if (fflush(stdout) != 0)
        return 3;
    return found == sum ? 0 : 1;
}
