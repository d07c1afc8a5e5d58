/* thread_ckpt.c - a threaded program to checkpoint mid-run (tests/test_thread_checkpoint.py).
 *
 * Four threads besides main: a worker that adds under a mutex and waits on a
 * condition variable, a sleeper (nanosleep in a loop), a waiter blocked in a
 * futex wait (pthread_cond_wait) that takes SIGUSR1, and a thread that keeps
 * SIGUSR1 blocked.  Each has a thread-local id.  All meet at a barrier, then
 * main prints "paused" and blocks reading stdin: the checkpoint is taken
 * there, with a SIGUSR1 pending for the blocker thread alone (pthread_kill)
 * and a SIGUSR2 pending for the process (kill; blocked everywhere).
 * Once a byte arrives, main sends SIGUSR1 to the waiter with
 * pthread_kill (glibc's cached tid), wakes everyone, joins them (the kernel's
 * clear-child-tid) and prints what each saw.  Exit status 3. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static __thread int tls_id = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t barrier;
static int phase;                      /* under lock: 1 once main has read stdin */
static long total;                     /* under lock */
static volatile sig_atomic_t usr1_in;  /* the tls_id of the thread that took SIGUSR1 */
static volatile sig_atomic_t stop_sleeping;
static int blocked_saw = -1;
static int blocker_code = 99; /* si_code of the SIGUSR1 pending for the blocker */

static void on_usr1(int sig)
{
    (void)sig;
    usr1_in = tls_id;
}

static void wait_phase(void)
{
    pthread_mutex_lock(&lock);
    while (phase == 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static void *worker(void *arg)
{
    tls_id = (int)(long)arg;
    for (int i = 0; i < 100000; i++) {
        pthread_mutex_lock(&lock);
        total += i % 7;
        pthread_mutex_unlock(&lock);
    }
    pthread_barrier_wait(&barrier);
    wait_phase();
    pthread_mutex_lock(&lock);
    total += 1000 * tls_id;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *sleeper(void *arg)
{
    tls_id = (int)(long)arg;
    pthread_barrier_wait(&barrier);
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (!stop_sleeping)
        nanosleep(&ts, NULL);
    return (void *)(long)tls_id;
}

static void *waiter(void *arg)
{
    tls_id = (int)(long)arg;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    pthread_barrier_wait(&barrier);
    wait_phase(); /* blocked in a futex wait when captured */
    while (usr1_in == 0)
        sched_yield();
    return (void *)(long)tls_id;
}

static void *blocker(void *arg)
{
    tls_id = (int)(long)arg;
    pthread_barrier_wait(&barrier);
    wait_phase();
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    blocked_saw = sigismember(&now, SIGUSR1);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    siginfo_t si;
    sigset_t pending;
    sigpending(&pending); /* pending since before the checkpoint, or lost: 99 */
    if (sigismember(&pending, SIGUSR1) && sigwaitinfo(&usr1, &si) == SIGUSR1)
        blocker_code = si.si_code;
    return (void *)(long)tls_id;
}

int main(void)
{
    tls_id = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigaddset(&usr1, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL); /* inherited: only the waiter unblocks SIGUSR1 */
    pthread_barrier_init(&barrier, NULL, 5);
    pthread_t t[4];
    void *(*fn[4])(void *) = {worker, sleeper, waiter, blocker};
    for (long i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, fn[i], (void *)(i + 1)) != 0)
            return 1;
    pthread_barrier_wait(&barrier);
    pthread_kill(t[3], SIGUSR1); /* pending for the blocker alone */
    kill(getpid(), SIGUSR2);     /* pending for the process */
    printf("paused\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1)
        return 2;
    pthread_kill(t[2], SIGUSR1); /* to the waiter, by glibc's cached tid */
    pthread_mutex_lock(&lock);
    phase = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    stop_sleeping = 1;
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    siginfo_t si;
    sigset_t pending;
    sigpending(&pending);
    int process_code = 99;
    if (sigismember(&pending, SIGUSR2) && sigwaitinfo(&usr2, &si) == SIGUSR2)
        process_code = si.si_code;
    long ids = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        if (pthread_join(t[i], &r) != 0)
            return 1;
        ids = ids * 10 + (long)r;
    }
    printf("total %ld\nsignal went to thread %d\nblocked thread kept its mask %d\n"
           "joined %ld\nmain tls %d\npending for the blocker: code %d\n"
           "pending for the process: code %d\n",
           total, (int)usr1_in, blocked_saw, ids, tls_id, blocker_code, process_code);
    return 3;
}
