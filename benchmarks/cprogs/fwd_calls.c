/* fwd_calls.c - the calls whose forwarding cost bench_cluster.py measures.
 *
 *   fwd_calls FILE N ROUNDS [wait]
 *
 * Opens FILE (created, truncated), then ROUNDS times: N 64-byte write()s to it
 * (from offset 0: the file is a regular file in the home node's /tmp, so on a
 * remote node every call goes home), N 64-byte read()s of it back, and N
 * open()+close() pairs of it.  Times each batch with clock_gettime
 * (CLOCK_MONOTONIC: the vDSO, never a system call, so never forwarded) and
 * prints, per call, the best and the median of the rounds' mean in ns:
 *   write BEST MEDIAN
 *   read BEST MEDIAN
 *   openclose BEST MEDIAN
 * With "wait" it first prints "ready" and waits for a byte on stdin (so that a
 * tracer can attach to it where it runs).
 * Exit status 0, 2 for bad arguments, 3 when a call fails (one line). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64
#define SIZE 64

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t); /* vDSO: cannot fail for this clock */
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void fail(const char *what)
{
    perror(what);
    exit(3);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *means, int rounds)
{
    qsort(means, (size_t)rounds, sizeof(double), by_value);
    printf("%s %.1f %.1f\n", name, means[0], means[rounds / 2]);
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "wait") == 0))
        return 2;
    const char *path = argv[1];
    long n = atol(argv[2]), rounds = atol(argv[3]);
    if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        return 2;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        fail("open");
    char buf[SIZE];
    memset(buf, 'x', sizeof(buf));
    double w[MAX_ROUNDS], r[MAX_ROUNDS], oc[MAX_ROUNDS];
    if (argc == 5) {
        char go;
        if (puts("ready") < 0 || fflush(stdout) != 0 || read(STDIN_FILENO, &go, 1) != 1)
            fail("waiting to start");
    }
    for (long k = 0; k < rounds; k++) {
        if (lseek(fd, 0, SEEK_SET) != 0)
            fail("lseek");
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (write(fd, buf, SIZE) != SIZE)
                fail("write");
        double t1 = now_ns();
        if (lseek(fd, 0, SEEK_SET) != 0)
            fail("lseek");
        double t2 = now_ns();
        for (long i = 0; i < n; i++)
            if (read(fd, buf, SIZE) != SIZE)
                fail("read");
        double t3 = now_ns();
        for (long i = 0; i < n; i++) {
            int g = open(path, O_RDONLY | O_CLOEXEC);
            if (g < 0)
                fail("open");
            if (close(g) != 0)
                fail("close");
        }
        double t4 = now_ns();
        w[k] = (t1 - t0) / (double)n;
        r[k] = (t3 - t2) / (double)n;
        oc[k] = (t4 - t3) / (double)n;
    }
    if (close(fd) != 0)
        fail("close");
    report("write", w, (int)rounds);
    report("read", r, (int)rounds);
    report("openclose", oc, (int)rounds);
    return fflush(stdout) == 0 ? 0 : 3;
}
