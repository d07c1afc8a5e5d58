/* fastpath_lines.c - numbered lines, one write() each, to a file (its first
 * argument) until its stdin ends; then "wrote N" on stdout.  A write that was
 * lost or done twice (a migration in the middle of a forwarded call) shows as
 * a gap or a repeat in the file.  Each line also says how many calls had taken
 * the preload shim's fast path so far ("N FAST"). */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

extern unsigned long mosix_shim_fast_calls __attribute__((weak));

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 3;
    long n = 0;
    for (;;) {
        char line[48];
        unsigned long fast = &mosix_shim_fast_calls ? mosix_shim_fast_calls : 0;
        int len = snprintf(line, sizeof(line), "%ld %lu\n", n, fast);
        if (write(fd, line, (size_t)len) != len)
            return 4;
        n++;
        if (n % 64 == 0) { /* the end of stdin: stop */
            struct pollfd p = {STDIN_FILENO, POLLIN, 0};
            int r = poll(&p, 1, 0);
            if (r < 0)
                return 5;
            if (r > 0)
                break;
        }
    }
    if (close(fd) != 0)
        return 6;
    printf("wrote %ld\n", n);
    return 0;
}
