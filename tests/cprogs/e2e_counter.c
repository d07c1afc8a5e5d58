/* e2e_counter OUT N PAUSE_AT [pipe]: the checkpoint tests' workload.
 *
 * Writes N lines "i value" to OUT (each value depends on all before it and on
 * a 4 MiB heap table, so a wrong memory image shows), and after line
 * PAUSE_AT prints "paused" on stdout and waits for one byte on stdin: the
 * test checkpoints it there.  With "pipe" it holds a pipe open on fd 5 while
 * paused (such a process cannot be checkpointed).  With "tmp" it keeps an
 * unlinked scratch file open while paused and prints what it reads back from
 * it afterwards.  Ends with "done" on stdout and exit status 3. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TABLE (4u << 20)

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    long n = atol(argv[2]), pause_at = atol(argv[3]);
    int with_pipe = argc > 4 && strcmp(argv[4], "pipe") == 0;
    int with_tmp = argc > 4 && strcmp(argv[4], "tmp") == 0;
    static const char kept[] = "kept across recovery\n";
    FILE *out = fopen(argv[1], "w");
    unsigned char *table = malloc(TABLE);
    if (out == NULL || table == NULL)
        return 2;
    for (uint32_t i = 0; i < TABLE; i++)
        table[i] = (unsigned char)(i * 2654435761u >> 24);
    uint64_t x = 88172645463325252ull;
    for (long i = 1; i <= n; i++) {
        for (int k = 0; k < 64; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            table[x % TABLE] ^= (unsigned char)x;
            x += table[(x >> 20) % TABLE];
        }
        fprintf(out, "%ld %llu\n", i, (unsigned long long)x);
        if (i == pause_at) {
            fflush(out);
            int p[2] = {-1, -1};
            if (with_pipe && (pipe(p) != 0 || dup2(p[0], 5) < 0))
                return 2;
            int tmp = -1;
            if (with_tmp) {
                tmp = open("scratch", O_RDWR | O_CREAT | O_EXCL, 0600);
                if (tmp < 0 || write(tmp, kept, sizeof(kept) - 1) != (ssize_t)sizeof(kept) - 1 ||
                    unlink("scratch") != 0)
                    return 2;
            }
            printf("paused\n");
            fflush(stdout);
            char c;
            if (read(0, &c, 1) != 1)
                return 4;
            if (with_pipe)
                close(5);
            if (with_tmp) {
                char back[sizeof(kept)] = {0};
                if (pread(tmp, back, sizeof(kept) - 1, 0) != (ssize_t)sizeof(kept) - 1)
                    return 5;
                printf("%s", back);
            }
        }
    }
    if (fclose(out) != 0)
        return 2;
    printf("done\n");
    return 3;
}
