/* A CPU-bound job of fixed size for the balancing benchmark: ROUNDS rounds of
 * pure computing (no system call in between), then one line and exit 0. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cpujob ROUNDS\n");
        return 2;
    }
    unsigned long rounds = strtoul(argv[1], NULL, 10);
    volatile unsigned long x = 0;
    for (unsigned long r = 0; r < rounds; r++)
        for (unsigned long i = 0; i < 10000000UL; i++)
            x += i ^ r;
    printf("%lu\n", (unsigned long)x);
    return 0;
}
