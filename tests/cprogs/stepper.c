/* stepper.c - a deterministic computation in steps, for migration tests.
 *
 * Usage: stepper OUTFILE
 * Step after step (each some CPU work over an 8 MiB array), it prints
 * "step N sum X" on stdout (flushed) and the same line to OUTFILE (through
 * stdio's buffer, flushed only at the end, so the buffer travels with it).
 * Between steps it looks at stdin without blocking: a line with a number K
 * makes it stop after step K (at once if K is already done); the end of
 * stdin without one, after the current step.  The output
 * depends on K only, never on where or when it ran: a run that migrated
 * must print exactly what a native run given the same K prints.
 * Exit status: 0; 2 bad usage; 3 OUTFILE cannot be written. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORDS (1u << 20) /* 8 MiB of state */
#define ROUNDS 32

static uint64_t state[WORDS];

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

/* One step: every word changes, the sum depends on all of them. */
static uint64_t step(unsigned n)
{
    uint64_t sum = n;
    for (unsigned r = 0; r < ROUNDS; r++)
        for (unsigned i = 0; i < WORDS; i++) {
            state[i] = mix(state[i] + state[(i * 7u + n) % WORDS] + r);
            sum += state[i];
        }
    return sum;
}

/* The step to stop after, once stdin said it (0: not yet). */
static unsigned long stop_after(unsigned n, char *pending, size_t *have, size_t cap)
{
    ssize_t got = read(STDIN_FILENO, pending + *have, cap - 1 - *have);
    if (got < 0 && errno != EAGAIN && errno != EINTR)
        return n;
    if (got > 0)
        *have += (size_t)got;
    pending[*have] = '\0';
    if (strchr(pending, '\n'))
        return strtoul(pending, NULL, 10);
    return got == 0 ? n : 0; /* the end of stdin without a number: now */
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    FILE *out = fopen(argv[1], "w");
    if (!out)
        return 3;
    int flags = fcntl(STDIN_FILENO, F_GETFL);
    if (flags < 0 || fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK) < 0)
        return 3;
    for (unsigned i = 0; i < WORDS; i++)
        state[i] = i;
    char pending[64];
    size_t have = 0;
    unsigned long last = 0;
    for (unsigned n = 1;; n++) {
        uint64_t sum = step(n);
        printf("step %u sum %016llx\n", n, (unsigned long long)sum);
        fflush(stdout);
        fprintf(out, "step %u sum %016llx\n", n, (unsigned long long)sum);
        if (!last)
            last = stop_after(n, pending, &have, sizeof(pending));
        if (last && n >= last)
            break;
    }
    if (fclose(out) != 0)
        return 3;
    return 0;
}
