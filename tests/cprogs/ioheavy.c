/* An I/O-bound job for the balancing tests: reads 64 bytes of FILE over and
 * over (each read a forwarded call when away from home) until its standard
 * input ends; then prints how many reads it made and exits 0. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        return 3;
    char buf[64];
    unsigned long reads = 0;
    for (;;) {
        for (int i = 0; i < 1000; i++, reads++)
            if (pread(fd, buf, sizeof buf, 0) < 0)
                return 4;
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int ready = poll(&p, 1, 0);
        if (ready < 0)
            return 5;
        if (ready > 0) {
            char c;
            if (read(0, &c, 1) <= 0)
                break;
        }
    }
    printf("%lu reads\n", reads);
    return 0;
}
