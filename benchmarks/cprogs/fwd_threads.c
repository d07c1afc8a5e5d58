/* fwd_threads THREADS CALLS: THREADS threads (the main one waits) each make
 * CALLS write(2)s of 64 bytes to /dev/null at once, after a barrier; prints
 * "calls_per_s N" (all threads' calls over the wall time from the barrier to
 * the last thread's end, CLOCK_MONOTONIC).  Exit status 0, 2 for bad
 * arguments, 3 for a failed call. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_barrier_t start;
static long calls;
static int fd;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *writer(void *arg)
{
    (void)arg;
    char buf[64] = {0};
    pthread_barrier_wait(&start);
    for (long i = 0; i < calls; i++)
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            exit(3);
    return NULL;
}

int main(int argc, char **argv)
{
    long threads = argc > 2 ? atol(argv[1]) : 0;
    calls = argc > 2 ? atol(argv[2]) : 0;
    if (threads < 1 || threads > 64 || calls < 1)
        return 2;
    fd = open("/dev/null", O_WRONLY);
    if (fd < 0 || pthread_barrier_init(&start, NULL, (unsigned)threads + 1) != 0)
        return 3;
    pthread_t t[64];
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, writer, NULL) != 0)
            return 3;
    pthread_barrier_wait(&start);
    double t0 = now();
    for (long i = 0; i < threads; i++)
        if (pthread_join(t[i], NULL) != 0)
            return 3;
    double took = now() - t0;
    printf("calls_per_s %.0f\n", (double)(threads * calls) / took);
    return 0;
}
