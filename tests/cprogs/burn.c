/* A CPU-bound job for the balancing tests: computes until its standard input
 * ends, then prints how much it computed and exits 0.  Between bursts of
 * computing it looks at stdin without blocking (one forwarded poll when away). */
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    unsigned long rounds = 0;
    for (;;) {
        volatile unsigned long x = 0;
        for (unsigned long i = 0; i < 20000000UL; i++)
            x += i;
        rounds++;
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int ready = poll(&p, 1, 0);
        if (ready < 0)
            return 3;
        if (ready > 0) {
            char c;
            ssize_t n = read(0, &c, 1);
            if (n <= 0)
                break;
        }
    }
    printf("burnt %lu rounds\n", rounds);
    return 0;
}
