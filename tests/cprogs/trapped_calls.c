/* trapped_calls.c - calls the preload shim's filter traps, one after another:
 * mmap of a file (its first argument) MAP_SHARED without PROT_WRITE (trapped
 * from libc and issued again as MAP_PRIVATE by the shim's SIGSYS handler),
 * checked, unmapped.  Prints "ready PID" when set up, then runs until its
 * stdin ends and prints "mapped N"; every 1024 calls it writes N (8 bytes) at
 * the start of its second argument, a file, to show it goes on.  A capture that stops it between a trap and its SIGSYS must
 * leave the call to be issued again: a call resumed as if done returns its
 * number (9: not a mapping), a SIGSYS sent again by kill() reaches the handler
 * as someone else's (the process dies of it). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    int progress = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char want[16];
    if (fd < 0 || progress < 0 || pread(fd, want, sizeof(want), 0) != (ssize_t)sizeof(want))
        return 3;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    long n = 0;
    for (;;) {
        void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED || (unsigned long)p < 4096) {
            printf("mmap returned %p (%s)\n", p, strerror(errno));
            return 4;
        }
        if (memcmp(p, want, sizeof(want)) != 0 || munmap(p, 4096) != 0)
            return 5;
        if (++n % 1024 == 0 && pwrite(progress, &n, sizeof(n), 0) != (ssize_t)sizeof(n))
            return 7;
        if (n % 256 == 0) { /* the end of stdin: stop */
            struct pollfd s = {STDIN_FILENO, POLLIN, 0};
            int r = poll(&s, 1, 0);
            if (r < 0)
                return 6;
            if (r > 0)
                break;
        }
    }
    printf("mapped %ld\n", n);
    return 0;
}
