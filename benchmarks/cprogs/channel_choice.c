/* channel_choice.c - which shape of the fast path serves threads at once (issue 16).
 *
 *   channel_choice MODE THREADS CALLS     MODE: perthread | shared
 *
 * A model of a forwarded call over loopback TCP: a 16-byte head and 64 bytes
 * out, a write of 64 bytes to /dev/null at "home", a 16-byte head and 8 bytes
 * back.  THREADS client threads make CALLS calls each, at once.
 *   perthread: each client thread has its own connection, served by a home
 *              thread of its own (the per-thread channels of issue 16).
 *   shared:    one connection; requests sent under a lock, replies matched by id
 *              (the thread reading the socket hands others' replies over), and
 *              at home one reader hands each request to a pool of THREADS
 *              workers that reply under a lock (one channel, a pool at home).
 * Prints "calls_per_s N". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXT 64
struct head {
    uint32_t len, type;
    uint64_t id;
};

static int calls, threads, devnull;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void full_read(int fd, void *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            die("read");
        p = (char *)p + r;
        n -= (size_t)r;
    }
}

static void full_write(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r <= 0)
            die("write");
        p = (const char *)p + r;
        n -= (size_t)r;
    }
}

static int listener, port;

static int connect_one(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        die("setsockopt");
    return fd;
}

static int accept_one(void)
{
    int fd = accept(listener, NULL, NULL), one = 1;
    if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        die("accept");
    return fd;
}

/* the call at home, and its reply */
static void execute(const unsigned char *req, unsigned char *rep)
{
    int64_t r = write(devnull, req + sizeof(struct head), 64);
    memcpy(rep + sizeof(struct head), &r, sizeof(r));
}

/* ---- perthread */
static void *home_thread(void *arg)
{
    int fd = (int)(long)arg;
    unsigned char req[sizeof(struct head) + 64], rep[sizeof(struct head) + 8];
    for (int i = 0; i < calls; i++) {
        full_read(fd, req, sizeof(req));
        memcpy(rep, req, sizeof(struct head));
        execute(req, rep);
        full_write(fd, rep, sizeof(rep));
    }
    return NULL;
}

static void *client_own(void *arg)
{
    int fd = (int)(long)arg;
    unsigned char req[sizeof(struct head) + 64] = {0}, rep[sizeof(struct head) + 8];
    for (int i = 0; i < calls; i++) {
        struct head h = {64, 1, (uint64_t)i};
        memcpy(req, &h, sizeof(h));
        full_write(fd, req, sizeof(req));
        full_read(fd, rep, sizeof(rep));
    }
    return NULL;
}

/* ---- shared */
static int shared_fd, home_fd;
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER, recv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t recv_cond = PTHREAD_COND_INITIALIZER;
static int reading, done[MAXT];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER, home_send = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static unsigned char queue[MAXT * 4][sizeof(struct head) + 64];
static int q_head, q_tail, q_end;

static void *client_shared(void *arg)
{
    long me = (long)arg;
    unsigned char req[sizeof(struct head) + 64] = {0}, rep[sizeof(struct head) + 8];
    for (int i = 0; i < calls; i++) {
        struct head h = {64, 1, (uint64_t)me};
        memcpy(req, &h, sizeof(h));
        pthread_mutex_lock(&send_lock);
        full_write(shared_fd, req, sizeof(req));
        pthread_mutex_unlock(&send_lock);
        pthread_mutex_lock(&recv_lock);
        while (!done[me]) {
            if (reading) {
                pthread_cond_wait(&recv_cond, &recv_lock);
                continue;
            }
            reading = 1;
            pthread_mutex_unlock(&recv_lock);
            full_read(shared_fd, rep, sizeof(rep)); /* whose-ever: its payload would go to its buffer */
            struct head got;
            memcpy(&got, rep, sizeof(got));
            pthread_mutex_lock(&recv_lock);
            done[got.id] = 1;
            reading = 0;
            pthread_cond_broadcast(&recv_cond);
        }
        done[me] = 0;
        pthread_mutex_unlock(&recv_lock);
    }
    return NULL;
}

static void *home_reader(void *arg)
{
    (void)arg;
    for (long i = 0; i < (long)calls * threads; i++) {
        unsigned char req[sizeof(struct head) + 64];
        full_read(home_fd, req, sizeof(req));
        pthread_mutex_lock(&pool_lock);
        memcpy(queue[q_tail++ % (MAXT * 4)], req, sizeof(req));
        pthread_cond_signal(&pool_cond);
        pthread_mutex_unlock(&pool_lock);
    }
    pthread_mutex_lock(&pool_lock);
    q_end = 1;
    pthread_cond_broadcast(&pool_cond);
    pthread_mutex_unlock(&pool_lock);
    return NULL;
}

static void *home_worker(void *arg)
{
    (void)arg;
    for (;;) {
        unsigned char req[sizeof(struct head) + 64], rep[sizeof(struct head) + 8];
        pthread_mutex_lock(&pool_lock);
        while (q_head == q_tail && !q_end)
            pthread_cond_wait(&pool_cond, &pool_lock);
        if (q_head == q_tail) {
            pthread_mutex_unlock(&pool_lock);
            return NULL;
        }
        memcpy(req, queue[q_head++ % (MAXT * 4)], sizeof(req));
        pthread_mutex_unlock(&pool_lock);
        memcpy(rep, req, sizeof(struct head));
        execute(req, rep);
        pthread_mutex_lock(&home_send);
        full_write(home_fd, rep, sizeof(rep));
        pthread_mutex_unlock(&home_send);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 || (threads = atoi(argv[2])) < 1 || threads > MAXT || (calls = atoi(argv[3])) < 1)
        return fprintf(stderr, "usage: channel_choice perthread|shared THREADS CALLS\n"), 2;
    int shared = strcmp(argv[1], "shared") == 0;
    if (!shared && strcmp(argv[1], "perthread") != 0)
        return fprintf(stderr, "channel_choice: no mode %s\n", argv[1]), 2;
    if ((devnull = open("/dev/null", O_WRONLY)) < 0)
        die("/dev/null");
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(listener, MAXT) < 0 || getsockname(listener, (struct sockaddr *)&a, &al) < 0)
        die("listen");
    port = ntohs(a.sin_port);
    pthread_t home[MAXT + 1], client[MAXT];
    int homes = 0, fds[MAXT];
    if (shared) {
        shared_fd = connect_one();
        home_fd = accept_one();
        pthread_create(&home[homes++], NULL, home_reader, NULL);
        for (int k = 0; k < threads; k++)
            pthread_create(&home[homes++], NULL, home_worker, NULL);
    } else {
        for (int k = 0; k < threads; k++) {
            fds[k] = connect_one();
            pthread_create(&home[homes++], NULL, home_thread, (void *)(long)accept_one());
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < threads; k++)
        pthread_create(&client[k], NULL, shared ? client_shared : client_own,
                       shared ? (void *)k : (void *)(long)fds[k]);
    for (int k = 0; k < threads; k++)
        pthread_join(client[k], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int k = 0; k < homes; k++)
        pthread_join(home[k], NULL);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("calls_per_s %.0f\n", (double)calls * threads / s);
    return 0;
}
