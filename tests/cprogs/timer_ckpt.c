/* timer_ckpt.c - POSIX timers across a checkpoint (tests/test_thread_checkpoint.py).
 *
 * Three timers: A signals the process (SIGALRM, value 5, every 20 ms), B a
 * chosen thread (SIGEV_THREAD_ID, SIGUSR2, value 7, every 20 ms), C is made
 * and never armed.  Main prints "paused" and blocks reading stdin (the
 * checkpoint; the thread waits at a barrier); then it waits for three of A's
 * signals while the thread waits for three of B's (at most 5 s each: a lost timer shows as a smaller count),
 * and prints what it saw, C's state and A's interval, through the timer_t
 * values it kept.  Exit status 3. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile long thread_tid;
static pthread_barrier_t after_read;

static int wait_timer(int sig, int value)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    struct timespec limit = {5, 0};
    int seen = 0;
    while (seen < 3) {
        siginfo_t si;
        if (sigtimedwait(&set, &si, &limit) != sig)
            break;
        if (si.si_code == SI_TIMER && si.si_value.sival_int == value)
            seen++;
    }
    return seen;
}

static void *waiter(void *arg)
{
    (void)arg;
    thread_tid = syscall(SYS_gettid);
    pthread_barrier_wait(&after_read); /* in a futex wait when captured */
    return (void *)(long)wait_timer(SIGUSR2, 7);
}

static timer_t make(int notify, int sig, int value, long tid)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = notify;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = value;
    ev._sigev_un._tid = (int)tid;
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0)
        _exit(1);
    return t;
}

int main(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the thread inherits it */
    pthread_t t;
    pthread_barrier_init(&after_read, NULL, 2);
    if (pthread_create(&t, NULL, waiter, NULL) != 0)
        return 1;
    while (thread_tid == 0)
        sched_yield();
    timer_t a = make(SIGEV_SIGNAL, SIGALRM, 5, 0);
    timer_t b = make(SIGEV_THREAD_ID, SIGUSR2, 7, thread_tid);
    timer_t c = make(SIGEV_NONE, 0, 0, 0);
    struct itimerspec every = {{0, 20000000}, {0, 200000000}};
    timer_settime(a, 0, &every, NULL);
    timer_settime(b, 0, &every, NULL);
    printf("paused\n");
    fflush(stdout);
    char ch;
    if (read(0, &ch, 1) != 1)
        return 2;
    pthread_barrier_wait(&after_read);
    int alarms = wait_timer(SIGALRM, 5);
    void *r;
    pthread_join(t, &r);
    struct itimerspec now;
    int c_state = timer_gettime(c, &now) == 0 && now.it_value.tv_sec == 0 && now.it_value.tv_nsec == 0;
    int a_state = timer_gettime(a, &now) == 0 ? (int)now.it_interval.tv_nsec : -1;
    printf("process timer %d\nthread timer %ld\nunarmed timer %d\ninterval %d\n", alarms, (long)r,
           c_state, a_state);
    return 3;
}
