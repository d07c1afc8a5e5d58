/* clocks.c - reads the node's clocks as programs do, through glibc (the vDSO).
 *
 * Usage: clocks
 * For each line on stdin it prints one line
 *   "mono S boot S raw S cpu NS time S tod S"
 * CLOCK_MONOTONIC and CLOCK_BOOTTIME through clock_gettime (the vDSO), the
 * raw system call's CLOCK_MONOTONIC, the process's CPU time, time() and
 * gettimeofday().  Meanwhile it spins reading CLOCK_MONOTONIC through the
 * vDSO, counting the times it went backwards, and looks at stdin every 10 ms
 * of that clock (poll, no waiting: it is never blocked in a call at home, so it
 * can be moved at any time); at the end of stdin it prints "backwards N" and
 * exits 0. */
#include <poll.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double seconds(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0) {
        perror("clock_gettime");
        _exit(1);
    }
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(void)
{
    struct timespec raw, cpu;
    struct timeval tv;
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &raw) != 0 ||
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) != 0 || gettimeofday(&tv, NULL) != 0) {
        perror("clocks");
        _exit(1);
    }
    printf("mono %.3f boot %.3f raw %.3f cpu %lld time %lld tod %lld\n", seconds(CLOCK_MONOTONIC),
           seconds(CLOCK_BOOTTIME), raw.tv_sec + raw.tv_nsec / 1e9,
           (long long)cpu.tv_sec * 1000000000 + cpu.tv_nsec, (long long)time(NULL),
           (long long)tv.tv_sec);
}

int main(void)
{
    long backwards = 0;
    double prev = seconds(CLOCK_MONOTONIC), look = prev;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        double now = seconds(CLOCK_MONOTONIC);
        if (now < prev) {
            backwards++;
            look = now; /* a clock that went back (moved with -t): look at stdin now */
        }
        prev = now;
        if (now < look)
            continue;
        look = now + 0.01;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int ready = poll(&p, 1, 0);
        if (ready < 0) {
            perror("poll");
            return 1;
        }
        if (ready == 0)
            continue;
        char buf[64];
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n')
                report();
    }
    printf("backwards %ld\n", backwards);
    return 0;
}
