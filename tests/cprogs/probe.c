/* probe.c - a test program for the MOSIX discipline (built dynamic and -static).
 *
 *   probe call NAME          make call NAME, print "NAME: ret=R errno=E", then "alive"
 *   probe sigsys-libc NAME   install a SIGSYS handler with sigaction(), then call NAME
 *   probe sigsys-raw NAME    install one with syscall(SYS_rt_sigaction), then call NAME
 *   probe block-libc NAME    block SIGSYS with sigprocmask(), then call NAME
 *   probe block-raw NAME     block it with syscall(SYS_rt_sigprocmask), then call NAME
 *   probe mmap-ro FILE       mmap FILE MAP_SHARED PROT_READ, print the mapping's flags
 *   probe stop-self          kill(getpid(), SIGSTOP) with a SIGTSTP handler
 *   probe nofile             print RLIMIT_NOFILE, then try to change it
 *   probe spawn              posix_spawn() and system(), print their statuses
 *   probe wait-signal        print "pid N ready", wait for SIGUSR1, print "got USR1"
 *   probe execchain N NAME   exec itself N times, then call NAME
 *   probe children           waitpid(-1, WNOHANG): the guard must not be a child
 *   probe loop N / loop-read N / trap N / stop-loop N / floor N   timing loops (benchmark)
 *   probe mode               the probe system call's answer
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void out(const char *s)
{
    if (write(1, s, strlen(s)) < 0)
        exit(3);
}

static void *thread_main(void *arg)
{
    return arg;
}

static long call(const char *name)
{
    if (strcmp(name, "personality") == 0)
        return personality(0xffffffff);
    if (strcmp(name, "raw-personality") == 0)
        return syscall(SYS_personality, 0xffffffffUL);
    if (strcmp(name, "acct") == 0)
        return acct(NULL);
    if (strcmp(name, "mlock") == 0) {
        static char page[4096];
        return mlock(page, sizeof(page));
    }
    if (strcmp(name, "sched_setaffinity") == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        return sched_setaffinity(0, sizeof(set), &set);
    }
    if (strcmp(name, "thread") == 0) {
        pthread_t t;
        int r = pthread_create(&t, NULL, thread_main, NULL);
        if (r == 0)
            pthread_join(t, NULL);
        errno = r;
        return r ? -1 : 0;
    }
    if (strcmp(name, "prio-self") == 0)
        return getpriority(PRIO_PROCESS, (id_t)getpid());
    if (strcmp(name, "prio-parent") == 0)
        return getpriority(PRIO_PROCESS, (id_t)getppid());
    if (strcmp(name, "clone3") == 0)
        return syscall(SYS_clone3, NULL, 0);
    if (strcmp(name, "mmap-shared-ro") == 0) {
        void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? -1 : 0;
    }
    if (strcmp(name, "unknown") == 0)
        return syscall(1000);
    if (strcmp(name, "x32") == 0)
        return syscall(0x40000000 | SYS_getppid);
    if (strcmp(name, "mmap-shared-rw") == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? -1 : 0;
    }
    fprintf(stderr, "probe: unknown call %s\n", name);
    exit(2);
}

static void report(const char *name)
{
    char line[128];
    errno = 0;
    long r = call(name);
    snprintf(line, sizeof(line), "%s: ret=%ld errno=%d\n", name, r, r < 0 ? errno : 0);
    out(line);
    out("alive\n");
}

static void own_handler(int sig)
{
    (void)sig;
    out("own handler ran\n");
}

/* a restorer for a raw rt_sigaction (glibc's is not exported) */
void probe_restore_rt(void);
__asm__(".text\n.globl probe_restore_rt\n.type probe_restore_rt,@function\n"
        "probe_restore_rt:\n\tmov $15, %rax\n\tsyscall\n");

struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void mmap_ro(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        printf("mmap: errno=%d\n", errno);
        return;
    }
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long lo, hi;
    char perms[8];
    while (maps && fgets(line, sizeof(line), maps))
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && lo == (unsigned long)p)
            printf("mapping: %s\n", perms);
    printf("first byte: %c\n", *(char *)p);
}

static volatile sig_atomic_t got;
static void on_signal(int sig)
{
    got = sig;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 2)
        return 2;
    const char *what = argv[1];
    if (strcmp(what, "call") == 0 && argc == 3) {
        report(argv[2]);
    } else if (strcmp(what, "sigsys-libc") == 0 && argc == 3) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = own_handler;
        if (sigaction(SIGSYS, &sa, NULL) != 0 || sigaction(SIGSYS, NULL, &old) != 0)
            return 4;
        printf("sigaction reports own handler: %d\n", old.sa_handler == own_handler);
        report(argv[2]);
    } else if (strcmp(what, "sigsys-raw") == 0 && argc == 3) {
        struct ksigaction ka = {own_handler, 0x04000000 /* SA_RESTORER */, probe_restore_rt, 0};
        printf("rt_sigaction: %ld\n", syscall(SYS_rt_sigaction, SIGSYS, &ka, NULL, 8));
        report(argv[2]);
    } else if (strcmp(what, "block-libc") == 0 && argc == 3) {
        sigset_t set, cur;
        sigemptyset(&set);
        sigaddset(&set, SIGSYS);
        if (sigprocmask(SIG_BLOCK, &set, NULL) != 0 || sigprocmask(SIG_BLOCK, NULL, &cur) != 0)
            return 4;
        printf("sigprocmask reports SIGSYS blocked: %d\n", sigismember(&cur, SIGSYS));
        report(argv[2]);
    } else if (strcmp(what, "block-raw") == 0 && argc == 3) {
        unsigned long set = 1UL << (SIGSYS - 1);
        printf("rt_sigprocmask: %ld\n", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 8));
        report(argv[2]);
    } else if (strcmp(what, "mmap-ro") == 0 && argc == 3) {
        mmap_ro(argv[2]);
    } else if (strcmp(what, "stop-self") == 0) {
        signal(SIGTSTP, on_signal);
        int r = kill(getpid(), SIGSTOP);
        printf("kill: ret=%d errno=%d\n", r, r ? errno : 0);
        printf("got: %s\n", got == SIGTSTP ? "SIGTSTP" : got ? "other" : "nothing");
    } else if (strcmp(what, "nofile") == 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return 4;
        printf("nofile: %lu %lu\n", (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max);
        struct rlimit lower = {rl.rlim_cur - 1, rl.rlim_max};
        int r = setrlimit(RLIMIT_NOFILE, &lower);
        printf("setrlimit: ret=%d errno=%d\n", r, r ? errno : 0);
    } else if (strcmp(what, "spawn") == 0) {
        pid_t pid;
        char *sh_argv[] = {"sh", "-c", "exit 3", NULL};
        int r = posix_spawn(&pid, "/bin/sh", NULL, NULL, sh_argv, environ);
        int status = -1;
        if (r == 0 && waitpid(pid, &status, 0) != pid)
            return 4;
        printf("posix_spawn: ret=%d exit=%d\n", r, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        status = system("exit 4");
        printf("system: exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (strcmp(what, "wait-signal") == 0) {
        sigset_t block, none;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, NULL);
        signal(SIGUSR1, on_signal);
        printf("pid %d ready\n", (int)getpid());
        sigemptyset(&none);
        while (got != SIGUSR1)
            sigsuspend(&none);
        printf("got USR1\n");
    } else if (strcmp(what, "execchain") == 0 && argc == 4) {
        int n = atoi(argv[2]);
        if (n > 0) {
            char next[16];
            snprintf(next, sizeof(next), "%d", n - 1);
            char *args[] = {argv[0], "execchain", next, argv[3], NULL};
            execv("/proc/self/exe", args);
            perror("execv");
            return 4;
        }
        FILE *st = fopen("/proc/self/status", "r");
        char line[256];
        while (st && fgets(line, sizeof(line), st))
            if (strncmp(line, "Seccomp_filters:", 16) == 0)
                fputs(line, stdout);
        report(argv[3]);
    } else if (strcmp(what, "loop") == 0 && argc == 3) {
        long n = atol(argv[2]), t0 = now_ns();
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        printf("%.1f ns/call\n", (double)(now_ns() - t0) / (double)n);
    } else if (strcmp(what, "floor") == 0 && argc == 3) {
        /* the getppid loop under a one-instruction allow-all filter: the kernel's
         * fixed cost of any seccomp filter (the benchmark's floor) */
        struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        struct sock_fprog prog = {1, allow};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog))
            return 4;
        long n = atol(argv[2]), t0 = now_ns();
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        printf("%.1f ns/call\n", (double)(now_ns() - t0) / (double)n);
    } else if (strcmp(what, "loop-read") == 0 && argc == 3) {
        long n = atol(argv[2]), t0;
        int fd = open("/dev/zero", O_RDONLY);
        char c;
        t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (read(fd, &c, 1) != 1)
                return 4;
        printf("%.1f ns/call\n", (double)(now_ns() - t0) / (double)n);
    } else if (strcmp(what, "trap") == 0 && argc == 3) {
        long n = atol(argv[2]), t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (syscall(SYS_personality, 0xffffffffUL) != -1 || errno != ENOSYS)
                return 5;
        printf("%.1f ns/call\n", (double)(now_ns() - t0) / (double)n);
    } else if (strcmp(what, "children") == 0) {
        int status;
        pid_t r = waitpid(-1, &status, WNOHANG);
        printf("waitpid: ret=%d errno=%d\n", (int)r, r < 0 ? errno : 0);
    } else if (strcmp(what, "stop-loop") == 0 && argc == 3) {
        long n = atol(argv[2]), t0;
        int sig = getenv("PROBE_NATIVE") ? SIGTSTP : SIGSTOP; /* natively SIGSTOP would stop */
        signal(SIGTSTP, SIG_IGN);
        t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (kill(getpid(), sig) != 0)
                return 5;
        printf("%.1f ns/call\n", (double)(now_ns() - t0) / (double)n);
    } else if (strcmp(what, "mode") == 0) {
        long r = syscall(0x3f4d5358);
        printf("probe: ret=%ld errno=%d\n", r, errno);
    } else {
        fprintf(stderr, "probe: bad arguments\n");
        return 2;
    }
    return 0;
}
