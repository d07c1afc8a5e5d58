/* restore_readbench.c - the baseline for the restorer's speed: read a whole
 * descriptor into freshly mapped memory (what any loader of the image must
 * at least do), 256 KiB per read(2). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK (256 << 10)

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = atoi(argv[1]);
    size_t cap = (size_t)1 << 34, len = 0;
    char *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        return 1;
    for (;;) {
        ssize_t n = read(fd, p + len, CHUNK);
        if (n < 0)
            return 1;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len + CHUNK > cap)
            return 1;
    }
    printf("%zu\n", len);
    return 0;
}
