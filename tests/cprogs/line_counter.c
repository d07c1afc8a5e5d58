/* line_counter.c - writes a file line by line, with computing in between.
 *
 * Usage: line_counter append|write FILE LINES
 *   opens FILE for appending (O_APPEND, created if need be) or for writing
 *   (created, truncated), says "ready PID" on stdout, then writes "line N\n"
 *   for N = 1..LINES, one write each after a stretch of computing, says "done"
 *   and exits 7 (1 when a call fails).  An uninterrupted run leaves FILE
 *   holding exactly those lines. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP_WORK 10000000UL

int main(int argc, char **argv)
{
    if (argc != 4)
        return 1;
    int flags = strcmp(argv[1], "append") == 0 ? O_WRONLY | O_CREAT | O_APPEND
                                                : O_WRONLY | O_CREAT | O_TRUNC;
    int fd = open(argv[2], flags, 0644);
    long lines = strtol(argv[3], NULL, 10);
    if (fd < 0 || lines <= 0)
        return 1;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    volatile unsigned long sink = 0;
    for (long n = 1; n <= lines; n++) {
        for (unsigned long i = 0; i < STEP_WORK; i++)
            sink += i;
        char line[32];
        int len = snprintf(line, sizeof(line), "line %ld\n", n);
        if (write(fd, line, (size_t)len) != len)
            return 1;
    }
    if (close(fd) != 0)
        return 1;
    printf("done\n");
    return 7;
}
