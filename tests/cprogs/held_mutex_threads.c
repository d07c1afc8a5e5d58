/* held_mutex_threads.c - mutexes two non-main threads hold across a checkpoint.
 *
 * held_mutex_threads recursive|errorcheck|robust: threads A and B each lock a
 * mutex of that kind (robust: recursive and robust), note their own id
 * (gettid) and compute; main says "A locked ..." and "B locked ...".  Then for
 * each line of stdin each thread in turn locks its mutex again (recursive: a
 * second level; errorcheck: EDEADLK, it owns it), computes, unlocks that level
 * and says whether the mutex's owner is still its gettid; main signals each
 * thread with pthread_kill (glibc: tgkill with the thread's id as glibc knows
 * it), and with tgkill, sched_getaffinity and a SIGEV_THREAD_ID timer on the
 * id the thread noted.  At
 * the end of stdin each thread unlocks (errorcheck: EPERM a second time) and
 * ends; main joins them and exits 3.  glibc decides "owned by this thread" by
 * the thread id it caches in each thread's control block, which the mutex also
 * records: a process recovered while its threads hold them must behave as it
 * does natively, not wait forever. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { NTHREADS = 2 };

struct worker {
    char name;
    pthread_t thread;
    pthread_mutex_t mutex;
    sem_t go, done;
    pid_t tid; /* gettid(), noted while it held the mutex before any checkpoint */
    unsigned long x;
    int relock, unlock, owner_is_me, finish;
    volatile sig_atomic_t signals;
};

static struct worker workers[NTHREADS];
static const char *kind;

static void on_usr1(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)info;
    (void)ctx;
    pid_t me = (pid_t)syscall(SYS_gettid);
    for (int i = 0; i < NTHREADS; i++)
        if (workers[i].tid == me)
            workers[i].signals++;
}

static unsigned long compute(unsigned long seed)
{
    unsigned long x = seed;
    for (int i = 0; i < 2000000; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    return x;
}

static void make(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (!strcmp(kind, "recursive")) {
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    } else if (!strcmp(kind, "errorcheck")) {
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    } else if (!strcmp(kind, "robust")) {
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    } else {
        fprintf(stderr, "held_mutex_threads: unknown kind %s\n", kind);
        exit(2);
    }
    int rc = pthread_mutex_init(m, &a);
    if (rc) {
        fprintf(stderr, "held_mutex_threads: init: %s\n", strerror(rc));
        exit(2);
    }
}

static void wait_sem(sem_t *s)
{
    while (sem_wait(s) != 0)
        if (errno != EINTR) {
            perror("held_mutex_threads: sem_wait");
            exit(2);
        }
}

static void *work(void *arg)
{
    struct worker *w = arg;
    w->relock = pthread_mutex_lock(&w->mutex);
    w->tid = (pid_t)syscall(SYS_gettid);
    w->x = compute((unsigned long)w->name);
    w->owner_is_me = w->mutex.__data.__owner == (int)syscall(SYS_gettid);
    sem_post(&w->done);
    for (;;) {
        wait_sem(&w->go);
        if (w->finish)
            break;
        w->relock = pthread_mutex_lock(&w->mutex);
        w->x = compute(w->x);
        w->owner_is_me = w->mutex.__data.__owner == (int)syscall(SYS_gettid);
        w->unlock = w->relock == 0 ? pthread_mutex_unlock(&w->mutex) : 0;
        sem_post(&w->done);
    }
    w->relock = pthread_mutex_unlock(&w->mutex);
    w->unlock = pthread_mutex_unlock(&w->mutex);
    sem_post(&w->done);
    return NULL;
}

static const char *said(int rc) { return rc ? strerror(rc) : "0"; }

/* A one-shot timer whose SIGUSR1 goes to the thread w noted (SIGEV_THREAD_ID):
 * 0 once it has arrived (the thread's count reaches want), or the error. */
static int thread_timer(struct worker *w, int want)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGUSR1;
    ev._sigev_un._tid = w->tid;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0)
        return errno;
    struct itimerspec once = {{0, 0}, {0, 1000000}};
    if (timer_settime(timer, 0, &once, NULL) != 0)
        return errno;
    while (w->signals < want)
        sched_yield();
    return timer_delete(timer) ? errno : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: held_mutex_threads recursive|errorcheck|robust\n");
        return 2;
    }
    kind = argv[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < NTHREADS; i++) {
        struct worker *w = &workers[i];
        w->name = (char)('A' + i);
        make(&w->mutex);
        sem_init(&w->go, 0, 0);
        sem_init(&w->done, 0, 0);
        int rc = pthread_create(&w->thread, NULL, work, w);
        if (rc) {
            fprintf(stderr, "held_mutex_threads: pthread_create: %s\n", strerror(rc));
            return 2;
        }
        wait_sem(&w->done);
        printf("%c locked %s owner-is-me %d %lx\n", w->name, said(w->relock), w->owner_is_me,
               w->x);
    }
    fflush(stdout);
    char line[256];
    for (int n = 1; fgets(line, sizeof(line), stdin); n++) {
        for (int i = 0; i < NTHREADS; i++) {
            struct worker *w = &workers[i];
            sem_post(&w->go);
            wait_sem(&w->done);
            int before = w->signals;
            int killed = pthread_kill(w->thread, SIGUSR1);
            while (w->signals < before + 1 && killed == 0)
                sched_yield(); /* delivered to that thread (one at a time: they merge) */
            int tgkilled = syscall(SYS_tgkill, getpid(), w->tid, SIGUSR1) ? errno : 0;
            while (w->signals < before + 2 && killed == 0 && tgkilled == 0)
                sched_yield();
            cpu_set_t set;
            int affinity = sched_getaffinity(w->tid, sizeof(set), &set) ? errno : 0;
            int timed = thread_timer(w, before + 3);
            printf("line %d %c relock %s unlock %s owner-is-me %d pthread_kill %s tgkill %s "
                   "sched_getaffinity %s timer %s signals %d %lx\n",
                   n, w->name, said(w->relock), said(w->unlock), w->owner_is_me, said(killed),
                   said(tgkilled), said(affinity), said(timed), w->signals - before, w->x);
        }
        fflush(stdout);
    }
    for (int i = 0; i < NTHREADS; i++) {
        struct worker *w = &workers[i];
        w->finish = 1;
        sem_post(&w->go);
        wait_sem(&w->done);
        int joined = pthread_join(w->thread, NULL);
        printf("%c unlocked %s again %s joined %s\n", w->name, said(w->relock), said(w->unlock),
               said(joined));
    }
    return 3;
}
