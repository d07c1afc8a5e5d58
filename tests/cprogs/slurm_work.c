/* slurm_work ID LINES [SPINS]: the Slurm tests' CPU-bound program.
 *
 * Prints LINES lines "ID i value" on stdout, one write each, with SPINS
 * rounds of integer work before each (default 2000000); every value depends
 * on all before it, so a resumed run that lost or repeated work, or memory,
 * prints something else.  The output depends on the arguments only, never on
 * where or when it ran.  Exit status 0; 2 for bad usage or a failed write. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long lines = atol(argv[2]);
    long spins = argc > 3 ? atol(argv[3]) : 2000000;
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)strlen(argv[1]);
    for (long i = 1; i <= lines; i++) {
        for (long s = 0; s < spins; s++) {
            x ^= x >> 31;
            x *= 0xbf58476d1ce4e5b9ULL;
            x += (uint64_t)s;
        }
        char line[128];
        int n = snprintf(line, sizeof line, "%s %ld %016llx\n", argv[1], i, (unsigned long long)x);
        if (n <= 0 || write(1, line, (size_t)n) != n)
            return 2;
    }
    return 0;
}
