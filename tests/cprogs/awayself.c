/* awayself.c - a program that asks for its own checkpoint, for the tests of that
 * request made away from home (tests/test_ckpt_own_away.py).
 *
 * Usage: awayself OUT N K GATE HOW
 *   writes N lines "i value" to OUT as awaycount.c does (each value depends on
 *   all before it and on a 4 MiB heap table); after line K it prints "at K",
 *   waits (computing) until the file GATE exists, then asks for its checkpoint:
 *     HOW "call"  mosix_checkpoint() (mosix_checkpoint.h)
 *     HOW "proc"  "1" written to /proc/self/checkpoint (the preload shim's file)
 *     HOW "file"  mosix_checkpoint_file(OUT-own) first (relative to the working
 *                 directory when OUT is), then mosix_checkpoint()
 *   and prints "checkpoint R": the call's result (0 taken, 1 resumed from it) or,
 *   for "proc", fclose's (0), or "checkpoint -1 ERRNO" (the number) when it failed; then
 *   the rest of the lines, "done", exit status 7. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosix_checkpoint.h>

#define TABLE (4u << 20)

static const char *out_name;

static int ask(const char *how)
{
    if (strcmp(how, "call") == 0)
        return mosix_checkpoint();
    if (strcmp(how, "file") == 0) {
        char name[4096];
        snprintf(name, sizeof(name), "%s-own", out_name);
        return mosix_checkpoint_file(name) != 0 ? -1 : mosix_checkpoint();
    }
    FILE *f = fopen("/proc/self/checkpoint", "w");
    if (f == NULL)
        return -1;
    if (fputs("1\n", f) == EOF) {
        int saved = errno;
        (void)fclose(f);
        errno = saved;
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    long n = atol(argv[2]), k = atol(argv[3]);
    out_name = argv[1];
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
            int r = ask(argv[5]);
            if (r < 0)
                printf("checkpoint -1 %d\n", errno);
            else
                printf("checkpoint %d\n", r);
            fflush(stdout);
        }
    }
    if (close(out) != 0)
        return 3;
    printf("done\n");
    return 7;
}
