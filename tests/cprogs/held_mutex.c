/* held_mutex.c - a mutex held across a checkpoint or a move, locked again after.
 *
 * held_mutex recursive|errorcheck|robust: locks a mutex of that kind
 * (robust: recursive and robust), computes, says "locked", then for each line
 * of stdin locks it again (recursive: a second level; errorcheck: EDEADLK,
 * the process owns it), computes, unlocks that level and says what it saw;
 * at the end of stdin unlocks it (errorcheck: EPERM a second time) and exits
 * 3.  glibc decides "owned by this thread" by its cached thread id, which the
 * mutex also records: a process recovered or moved while holding it must
 * relock it as it does natively, not wait forever. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t mutex;

static unsigned long compute(unsigned long seed)
{
    unsigned long x = seed;
    for (int i = 0; i < 2000000; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    return x;
}

static void make(const char *kind)
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
        fprintf(stderr, "held_mutex: unknown kind %s\n", kind);
        exit(2);
    }
    int rc = pthread_mutex_init(&mutex, &a);
    if (rc) {
        fprintf(stderr, "held_mutex: init: %s\n", strerror(rc));
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: held_mutex recursive|errorcheck|robust\n");
        return 2;
    }
    make(argv[1]);
    int rc = pthread_mutex_lock(&mutex);
    unsigned long x = compute(1);
    printf("locked %d %lx\n", rc, x);
    fflush(stdout);
    char line[256];
    for (int n = 1; fgets(line, sizeof(line), stdin); n++) {
        rc = pthread_mutex_lock(&mutex);
        x = compute(x);
        int un = rc == 0 ? pthread_mutex_unlock(&mutex) : 0;
        printf("line %d relock %s unlock %d %lx\n", n, rc ? strerror(rc) : "0", un, x);
        fflush(stdout);
    }
    rc = pthread_mutex_unlock(&mutex);
    int again = pthread_mutex_unlock(&mutex);
    printf("unlocked %d again %s\n", rc, again ? strerror(again) : "0");
    return 3;
}
