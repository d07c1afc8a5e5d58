/* filemap.c - maps files by descriptor and prints what it saw, to compare a run
 * at home with one on another node.
 *
 * Usage: filemap DATA LIBRARY [again]
 *   DATA     a regular file of at least 3 pages, not a multiple of the page size
 *   LIBRARY  a shared library defining `int filemap_answer(void)`
 *   again    then read a line from stdin (the test moves the process meanwhile)
 *            and print the mappings' sums again
 * Prints one line per check; exits 0, or 1 when a call fails unexpectedly. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static sigjmp_buf bus;

static void on_bus(int sig)
{
    (void)sig;
    siglongjmp(bus, 1);
}

static uint64_t sum(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static const char *err(void *p)
{
    return p == MAP_FAILED ? strerror(errno) : "mapped";
}

int main(int argc, char **argv)
{
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "again") == 0))
        return 2;
    long page = sysconf(_SC_PAGESIZE);
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return 1;
    size_t size = (size_t)st.st_size;

    unsigned char *whole = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (whole == MAP_FAILED)
        printf("whole: %s\n", strerror(errno));
    else
        printf("whole: %zu bytes sum %016llx\n", size, (unsigned long long)sum(whole, size));

    /* an offset, written to in the process only */
    unsigned char *part = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
                               page);
    if (part == MAP_FAILED) {
        printf("part: %s\n", strerror(errno));
    } else {
        unsigned char before = part[0];
        memset(part, 'X', 16);
        unsigned char onfile = 0;
        if (pread(fd, &onfile, 1, page) != 1)
            return 1;
        printf("part: sum %016llx first %d file keeps %d\n",
               (unsigned long long)sum(part, 2 * (size_t)page), before, onfile == before);
    }

    /* past the end of the file: the tail of the last page reads zero, the next page faults */
    size_t pages = (size + (size_t)page - 1) / (size_t)page;
    unsigned char *tail = mmap(NULL, (pages + 1) * (size_t)page, PROT_READ, MAP_PRIVATE, fd, 0);
    if (tail == MAP_FAILED) {
        printf("tail: %s\n", strerror(errno));
    } else {
        struct sigaction sa = {.sa_handler = on_bus};
        if (sigaction(SIGBUS, &sa, NULL) < 0)
            return 1;
        int zero = tail[pages * (size_t)page - 1] == 0;
        volatile int faulted = 0;
        if (sigsetjmp(bus, 1) == 0)
            (void)*(volatile unsigned char *)(tail + pages * (size_t)page);
        else
            faulted = 1;
        printf("tail: zero %d sigbus %d\n", zero, faulted);
    }

    int p[2];
    int wr = open(argv[1], O_WRONLY);
    if (pipe(p) < 0 || wr < 0)
        return 1;
    printf("pipe: %s\n", err(mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE, p[0], 0)));
    printf("write-only: %s\n", err(mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE, wr, 0)));
    printf("closed: %s\n", err(mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE, 77, 0)));
    printf("unaligned: %s\n", err(mmap(NULL, (size_t)page, PROT_READ, MAP_PRIVATE, fd, 1)));

    void *lib = dlopen(argv[2], RTLD_NOW);
    if (!lib) {
        printf("dlopen: %s\n", dlerror());
    } else {
        int (*answer)(void) = (int (*)(void))dlsym(lib, "filemap_answer");
        printf("dlopen: answer %d\n", answer ? answer() : -1);
    }
    fflush(stdout);
    if (argc == 4 && whole != MAP_FAILED && part != MAP_FAILED) {
        char line[64];
        if (!fgets(line, sizeof(line), stdin))
            return 1;
        printf("again: whole %016llx part %016llx\n", (unsigned long long)sum(whole, size),
               (unsigned long long)sum(part, 2 * (size_t)page));
    }
    return 0;
}
