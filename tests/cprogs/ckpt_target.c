/* ckpt_target.c - programs for the checkpointer's tests (built dynamic and -static).
 *
 * Each prints one line "ready PID ..." (flushed) when it is set up, so the
 * test captures it at a known point, then runs on:
 *
 *   ckpt_target counter FILE N  N MiB of patterned memory (word i: pattern(i)); FILE
 *                               gets "I\n" for I = 1, 2, ... every millisecond; the
 *                               memory is checked on every step ("CORRUPT", exit 3);
 *                               "ready PID FD ADDR"
 *   ckpt_target read            block in read(0); then print "got LINE"
 *   ckpt_target sleep S         nanosleep S seconds; "slept MS" (or the errno)
 *   ckpt_target unlinked DIR    a file DIR/gone (O_RDWR, "hello unlinked\n" x 1000,
 *                               offset 7) and DIR/wonly (O_WRONLY) unlinked; pause
 *   ckpt_target pipe            a pipe on fds 5 (read end) and 7; pause
 *   ckpt_target socket          a socket on fd 6; pause
 *   ckpt_target threads         a second thread; pause
 *   ckpt_target files DIR       DIR/data O_RDONLY at offset 3, DIR/log O_WRONLY|O_APPEND
 *                               (cloexec), DIR itself, /dev/null, an eventfd; pause
 *   ckpt_target appender DIR    DIR/log O_WRONLY|O_APPEND, emptied; "ready PID FD"; then
 *                               appends "appended line\n" as fast as it can, up to
 *                               APPENDED_MAX bytes; pause
 *   ckpt_target state           signal handlers, an altstack, a blocked mask, an
 *                               interval timer; pause
 *   ckpt_target memory FILE     a PROT_NONE area with data, a private map of FILE past its
 *                               end, a MAP_SHARED read-only map of FILE; pause
 *   ckpt_target shared FILE     a writable MAP_SHARED map of FILE; pause
 *   ckpt_target big N           N MiB of random-looking pages (benchmark); pause
 *   ckpt_target busy N          N MiB, rewritten continuously (copy-on-write under way)
 *   ckpt_target child           fork a child that pauses; wait() for it, printing the result
 *   ckpt_target signals         count SIGRTMIN+1 (a handler, SA_RESTART); for every line
 *                               read from stdin print "count N"
 *   ckpt_target exec N          N MiB; on a line from stdin, execute itself as "read"
 *   ckpt_target setid           (root) real uid 65534, effective and saved 0; pause
 *   ckpt_target suspend         block SIGHUP, then sigsuspend() with only SIGUSR2 blocked;
 *                               on SIGUSR1 print "mask HUP USR2" (0 or 1 each: blocked)
 *   ckpt_target nofork HOW      an area with MADV_DONTFORK (HOW dontfork) or
 *                               MADV_WIPEONFORK (wipeonfork); "ready PID ADDR"; pause
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)
#define PAGE 4096u

static void ready(const char *extra)
{
    printf("ready %d %s\n", (int)getpid(), extra);
    fflush(stdout);
}

static void die(const char *what)
{
    printf("%s failed: errno %d\n", what, errno);
    fflush(stdout);
    exit(2);
}

static _Noreturn void pause_forever(void)
{
    for (;;)
        pause();
}

static uint64_t pattern(uint64_t i) { return i * 0x9E3779B97F4A7C15ull + 1; }

static uint64_t *patterned(size_t mib)
{
    size_t n = mib * MIB / 8;
    uint64_t *m = malloc(n * 8 + 8);
    if (!m)
        die("malloc");
    for (size_t i = 0; i < n; i++)
        m[i] = pattern(i);
    return m;
}

static int counter(const char *file, size_t mib)
{
    uint64_t *m = patterned(mib);
    size_t n = mib * MIB / 8;
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    char extra[64];
    snprintf(extra, sizeof(extra), "%d %p", fd, (void *)m);
    ready(extra);
    struct timespec ms = {0, 1000000};
    for (uint64_t i = 1;; i++) {
        char line[32];
        int len = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)i);
        if (write(fd, line, (size_t)len) != len)
            die("write");
        for (size_t k = i % 512; k < n; k += 512) /* a part of the memory each step */
            if (m[k] != pattern(k)) {
                printf("CORRUPT at %zu\n", k);
                fflush(stdout);
                return 3;
            }
        if (nanosleep(&ms, NULL) < 0 && errno != EINTR)
            die("nanosleep");
    }
}

static int blocked_read(void)
{
    char buf[256];
    ready("read");
    ssize_t n = read(0, buf, sizeof(buf) - 1);
    if (n < 0)
        die("read");
    buf[n] = '\0';
    printf("got %s", buf);
    return 0;
}

static int sleeper(int seconds)
{
    struct timespec t0, t1, want = {seconds, 0};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ready("sleep");
    if (nanosleep(&want, NULL) < 0)
        die("nanosleep");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    printf("slept %ld\n", ms);
    return 0;
}

static int unlinked(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/gone", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("open");
    for (int i = 0; i < 1000; i++)
        if (write(fd, "hello unlinked\n", 15) != 15)
            die("write");
    if (lseek(fd, 7, SEEK_SET) != 7 || unlink(path) < 0)
        die("unlink");
    snprintf(path, sizeof(path), "%s/wonly", dir);
    int w = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (w < 0 || write(w, "abc", 3) != 3 || unlink(path) < 0)
        die("wonly");
    char extra[64];
    snprintf(extra, sizeof(extra), "%d %d", fd, w);
    ready(extra);
    pause_forever();
}

static int with_pipe(void)
{
    int p[2];
    if (pipe(p) < 0 || dup2(p[0], 5) < 0 || dup2(p[1], 7) < 0 || close(p[0]) < 0 ||
        close(p[1]) < 0)
        die("pipe");
    ready("pipe");
    pause_forever();
}

static int with_socket(void)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || dup2(s, 6) < 0 || close(s) < 0)
        die("socket");
    ready("socket");
    pause_forever();
}

static void *idle(void *arg)
{
    (void)arg;
    pause_forever();
}

static int threads(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL) != 0)
        die("pthread_create");
    ready("threads");
    pause_forever();
}

static int files(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/data", dir);
    int a = open(path, O_RDONLY);
    if (a < 0 || lseek(a, 3, SEEK_SET) != 3)
        die("data");
    snprintf(path, sizeof(path), "%s/log", dir);
    int b = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    int n = open("/dev/null", O_RDWR);
    int e = eventfd(0, 0);
    if (b < 0 || d < 0 || n < 0 || e < 0)
        die("open");
    char extra[64];
    snprintf(extra, sizeof(extra), "%d %d %d %d %d", a, b, d, n, e);
    ready(extra);
    pause_forever();
}

#define APPENDED_MAX (256L << 20)

/* The sole writer of a file it appends to: whenever it is stopped, the file
 * ends at its descriptor's offset. */
static int appender(const char *dir)
{
    static const char line[] = "appended line\n";
    char path[4096];
    snprintf(path, sizeof(path), "%s/log", dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    char extra[16];
    snprintf(extra, sizeof(extra), "%d", fd);
    ready(extra);
    for (long done = 0; done < APPENDED_MAX; done += (long)sizeof(line) - 1)
        if (write(fd, line, sizeof(line) - 1) != (ssize_t)sizeof(line) - 1)
            die("write");
    pause_forever();
}

static void on_usr1(int sig) { (void)sig; }

static int state(void)
{
    static char altstack[65536];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    if (sigaction(SIGUSR1, &sa, NULL) < 0 || signal(SIGUSR2, SIG_IGN) == SIG_ERR)
        die("sigaction");
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
    if (sigaltstack(&ss, NULL) < 0)
        die("sigaltstack");
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGRTMIN + 3);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        die("sigprocmask");
    struct itimerval it = {.it_interval = {7, 0}, .it_value = {1000, 0}};
    if (setitimer(ITIMER_REAL, &it, NULL) < 0)
        die("setitimer");
    char extra[128];
    snprintf(extra, sizeof(extra), "%p %p %p", (void *)on_usr1, (void *)altstack,
             (void *)sbrk(0));
    ready(extra);
    pause_forever();
}

static int memory(const char *file)
{
    char *none = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (none == MAP_FAILED)
        die("mmap");
    memset(none + PAGE, 0x5a, PAGE);
    if (mprotect(none, 4 * PAGE, PROT_NONE) < 0)
        die("mprotect");
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        die("open");
    char *past = mmap(NULL, 8 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0); /* the file is 1 page */
    char *ro = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    if (past == MAP_FAILED || ro == MAP_FAILED)
        die("mmap file");
    char extra[128];
    snprintf(extra, sizeof(extra), "%p %p %p", (void *)none, (void *)past, (void *)ro);
    ready(extra);
    pause_forever();
}

static int shared(const char *file)
{
    int fd = open(file, O_RDWR);
    if (fd < 0)
        die("open");
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap");
    ready("shared");
    pause_forever();
}

static uint64_t *big(size_t mib)
{
    size_t n = mib * MIB / 8;
    uint64_t *m = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap");
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) { /* xorshift: nothing compresses, no page is zero */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        m[i] = x;
    }
    return m;
}

static _Noreturn void busy(size_t mib)
{
    uint64_t *m = big(mib);
    size_t n = mib * MIB / 8;
    ready("busy");
    for (uint64_t round = 0;; round++)
        for (size_t i = 0; i < n; i += PAGE / 8)
            m[i] += round;
}

static int child(void)
{
    pid_t c = fork();
    if (c < 0)
        die("fork");
    if (c == 0)
        pause_forever();
    char extra[32];
    snprintf(extra, sizeof(extra), "%d", (int)c);
    ready(extra);
    int status;
    pid_t w = wait(&status);
    if (w < 0)
        die("wait");
    printf("waited %d %d\n", (int)w, status);
    return 0;
}

static volatile sig_atomic_t received;

static void on_rt(int sig)
{
    (void)sig;
    received++;
}

static int count_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_rt;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN + 1, &sa, NULL) < 0)
        die("sigaction");
    ready("signals");
    char buf[256];
    for (;;) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n < 0)
            die("read");
        if (n == 0)
            return 0;
        printf("count %d\n", (int)received);
        fflush(stdout);
    }
}

static int exec_on_line(size_t mib)
{
    big(mib);
    ready("exec");
    char buf[16];
    if (read(0, buf, sizeof(buf)) <= 0)
        die("read");
    char *argv[] = {"ckpt_target", "read", NULL};
    execv("/proc/self/exe", argv);
    die("execv");
    return 2;
}

static int setid(void)
{
    if (setresuid(65534, 0, 0) < 0)
        die("setresuid");
    ready("setid");
    pause_forever();
}

static int nofork(const char *how)
{
    char *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    memset(p, 1, 4 * PAGE);
    if (madvise(p, 4 * PAGE, strcmp(how, "dontfork") == 0 ? MADV_DONTFORK : MADV_WIPEONFORK) < 0)
        die("madvise");
    char extra[32];
    snprintf(extra, sizeof(extra), "%p", (void *)p);
    ready(extra);
    pause_forever();
}

static int suspend(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigset_t hup, usr2, now;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    if (sigaction(SIGUSR1, &sa, NULL) < 0 || sigprocmask(SIG_BLOCK, &hup, NULL) < 0)
        die("sigaction");
    ready("suspend");
    if (sigsuspend(&usr2) >= 0 || errno != EINTR)
        die("sigsuspend");
    if (sigprocmask(SIG_BLOCK, NULL, &now) < 0)
        die("sigprocmask");
    printf("mask %d %d\n", sigismember(&now, SIGHUP), sigismember(&now, SIGUSR2));
    return 0;
}

int main(int argc, char **argv)
{
    static char outbuf[4096];
    setvbuf(stdout, outbuf, _IOLBF, sizeof(outbuf)); /* no malloc behind the state's brk */
    const char *cmd = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";
    if (strcmp(cmd, "counter") == 0)
        return counter(arg, argc > 3 ? (size_t)atoi(argv[3]) : 4);
    if (strcmp(cmd, "read") == 0)
        return blocked_read();
    if (strcmp(cmd, "sleep") == 0)
        return sleeper(atoi(arg));
    if (strcmp(cmd, "unlinked") == 0)
        return unlinked(arg);
    if (strcmp(cmd, "pipe") == 0)
        return with_pipe();
    if (strcmp(cmd, "socket") == 0)
        return with_socket();
    if (strcmp(cmd, "threads") == 0)
        return threads();
    if (strcmp(cmd, "files") == 0)
        return files(arg);
    if (strcmp(cmd, "appender") == 0)
        return appender(arg);
    if (strcmp(cmd, "state") == 0)
        return state();
    if (strcmp(cmd, "memory") == 0)
        return memory(arg);
    if (strcmp(cmd, "shared") == 0)
        return shared(arg);
    if (strcmp(cmd, "big") == 0) {
        big((size_t)atoi(arg));
        ready("big");
        pause_forever();
    }
    if (strcmp(cmd, "busy") == 0)
        busy((size_t)atoi(arg));
    if (strcmp(cmd, "child") == 0)
        return child();
    if (strcmp(cmd, "signals") == 0)
        return count_signals();
    if (strcmp(cmd, "exec") == 0)
        return exec_on_line((size_t)atoi(arg));
    if (strcmp(cmd, "setid") == 0)
        return setid();
    if (strcmp(cmd, "nofork") == 0)
        return nofork(arg);
    if (strcmp(cmd, "suspend") == 0)
        return suspend();
    fprintf(stderr, "usage: ckpt_target counter|read|sleep|unlinked|pipe|socket|threads|files|"
                    "appender|state|memory|shared|big|busy|child|signals|exec|setid|nofork|"
                    "suspend ARGS\n");
    return 2;
}
