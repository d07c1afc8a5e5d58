/* faulty.c - a program for migration fault tests.
 *
 * Usage: faulty MB STEPS STATUS
 *   fills MB megabytes with a known pattern, prints "ready PID", waits for a
 *   line on stdin, then runs STEPS steps (0: without end), each a stretch of
 *   computing followed by "step N" on stdout; at the end checks the memory
 *   ("memory intact" or "memory damaged") and exits with STATUS. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define STEP_WORK 30000000UL

static uint64_t pattern(size_t i)
{
    return (uint64_t)i * 0x9E3779B97F4A7C15ULL + 1;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    size_t words = (size_t)strtoul(argv[1], NULL, 10) * (1 << 20) / sizeof(uint64_t);
    long steps = strtol(argv[2], NULL, 10);
    int status = atoi(argv[3]);
    uint64_t *mem = NULL;
    if (words) {
        mem = malloc(words * sizeof(uint64_t));
        if (!mem)
            return 3;
        for (size_t i = 0; i < words; i++)
            mem[i] = pattern(i);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 4;
    volatile unsigned long sink = 0;
    for (long step = 1; steps == 0 || step <= steps; step++) {
        for (unsigned long i = 0; i < STEP_WORK; i++)
            sink += i;
        printf("step %ld\n", step);
        fflush(stdout);
    }
    for (size_t i = 0; i < words; i++)
        if (mem[i] != pattern(i)) {
            printf("memory damaged at word %zu\n", i);
            return 5;
        }
    printf("memory intact\n");
    free(mem);
    return status;
}
