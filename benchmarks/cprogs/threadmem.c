/* threadmem THREADS MIB: THREADS threads (the main one included) touch MIB MiB
 * of anonymous memory between them with incompressible data, each its own
 * share; main prints "ready" while the others wait on a condition variable,
 * then on one byte of stdin every thread sums one word of each page of its
 * share and main answers "ok SUM" (so a restored copy proves its threads and
 * pages came back, at little cost beyond the restore). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int touched, go;
static uint64_t *mem;
static size_t share; /* words per thread */

static uint64_t sum_of(long i)
{
    uint64_t sum = 0;
    for (size_t w = 0; w < share; w += 512) /* a word per page */
        sum += mem[(size_t)i * share + w];
    return sum;
}

static void touch(long i)
{
    uint64_t x = 0x9E3779B97F4A7C15ull + (uint64_t)i;
    for (size_t w = 0; w < share; w++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        mem[(size_t)i * share + w] = x;
    }
}

static void *thread(void *arg)
{
    long i = (long)arg;
    touch(i);
    pthread_mutex_lock(&lock);
    touched++;
    pthread_cond_broadcast(&cond);
    while (!go)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return (void *)(uintptr_t)sum_of(i);
}

int main(int argc, char **argv)
{
    long threads = argc > 1 ? atol(argv[1]) : 1;
    size_t bytes = (size_t)atol(argc > 2 ? argv[2] : "1") << 20;
    if (threads < 1 || threads > 64)
        return 2;
    share = bytes / 8 / (size_t)threads;
    mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 2;
    pthread_t t[64];
    for (long i = 1; i < threads; i++)
        if (pthread_create(&t[i], NULL, thread, (void *)i) != 0)
            return 2;
    touch(0);
    pthread_mutex_lock(&lock);
    while (touched < threads - 1)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    printf("ready\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1)
        return 3;
    pthread_mutex_lock(&lock);
    go = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    uint64_t sum = sum_of(0);
    for (long i = 1; i < threads; i++) {
        void *r;
        if (pthread_join(t[i], &r) != 0)
            return 2;
        sum += (uint64_t)(uintptr_t)r;
    }
    printf("ok %llx\n", (unsigned long long)sum);
    return 0;
}
