/* tid_calls.c - the cost of the calls a moved or recovered process's thread id
 * translation traps (bench_tid_calls.py).
 *
 * A second thread, for each line of stdin, times three calls for about
 * 0.2 s each and prints "sigprocmask NS gettid NS pthread_kill0 NS" (ns per
 * call): sigprocmask (glibc's rt_sigprocmask, trapped whatever it names),
 * gettid through syscall(2) (trapped), pthread_kill(main, 0) (glibc blocks
 * every signal, tgkill with the main thread's id, restores the mask).  At the
 * end of stdin it exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static sem_t go, done;
static pthread_t main_thread;
static int finish;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

enum { SIGPROCMASK, GETTID, PTHREAD_KILL0 };

static void one(int what)
{
    sigset_t none;
    sigemptyset(&none);
    switch (what) {
    case SIGPROCMASK:
        if (sigprocmask(SIG_BLOCK, &none, NULL) != 0)
            exit(2);
        break;
    case GETTID:
        if (syscall(SYS_gettid) <= 0)
            exit(2);
        break;
    default:
        if (pthread_kill(main_thread, 0) != 0)
            exit(2);
        break;
    }
}

/* ns per call, timed for about 0.2 s after a warm-up */
static double per_call(int what)
{
    for (int i = 0; i < 10; i++)
        one(what);
    double start = now(), end = start + 2e8, t = start;
    long calls = 0;
    while (t < end) {
        for (int i = 0; i < 16; i++)
            one(what);
        calls += 16;
        t = now();
    }
    return (t - start) / (double)calls;
}

static void *work(void *arg)
{
    (void)arg;
    for (;;) {
        while (sem_wait(&go) != 0)
            ;
        if (finish)
            return NULL;
        double m = per_call(SIGPROCMASK), g = per_call(GETTID), k = per_call(PTHREAD_KILL0);
        printf("sigprocmask %.1f gettid %.1f pthread_kill0 %.1f\n", m, g, k);
        fflush(stdout);
        sem_post(&done);
    }
}

int main(void)
{
    main_thread = pthread_self();
    sem_init(&go, 0, 0);
    sem_init(&done, 0, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, work, NULL) != 0)
        return 2;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof(line), stdin)) {
        sem_post(&go);
        while (sem_wait(&done) != 0)
            ;
    }
    finish = 1;
    sem_post(&go);
    pthread_join(t, NULL);
    return 0;
}
