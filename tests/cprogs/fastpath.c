/* fastpath.c - a program for the fast path of forwarded calls: N writes of 64
 * bytes to a file (its first argument), the file read back, then on stdout how
 * many calls took the preload shim's fast path (its exported counter; absent
 * in a program without the shim) and what was read. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern unsigned long mosix_shim_fast_calls __attribute__((weak));

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int n = atoi(argv[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 3;
    char block[64];
    memset(block, 'x', sizeof(block));
    for (int i = 0; i < n; i++)
        if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
            return 4;
    if (close(fd) != 0)
        return 5;
    fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        return 6;
    long total = 0;
    ssize_t got;
    while ((got = read(fd, block, sizeof(block))) > 0)
        total += got;
    if (got < 0 || close(fd) != 0)
        return 7;
    unsigned long fast = &mosix_shim_fast_calls ? mosix_shim_fast_calls : 0;
    printf("read %ld fast %lu\n", total, fast);
    return 0;
}
