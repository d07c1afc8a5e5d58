/* trap_costs.c - what it costs to catch one system call, each way, on this kernel.
 *
 *   trap_costs N ROUNDS
 *
 * getppid() N times per round, in a child process each way:
 *   plain        no filter (the call itself)
 *   sigsys       a filter returns SECCOMP_RET_TRAP for it and a SIGSYS handler
 *                in the process answers (the in-process trap design)
 *   notif        a filter returns SECCOMP_RET_USER_NOTIF and a supervisor in
 *                another process answers, with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
 *                and a poll() before each receive, as mosix-remote does (the
 *                design built)
 *   notif-async  the same without SYNC_WAKE_UP
 * Prints "NAME BEST MEDIAN" (ns per call over ROUNDS rounds) for each.
 * Exit status 0, 2 for bad arguments, 3 when a call fails (one line).
 * Built with csrc/forward_channel.c (mosix_receive_fd, as mosix-remote). */
#include "forward_wire.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

#define MAX_ROUNDS 64
#define ANSWER 4242

static long n, rounds;

static void die(const char *what)
{
    fprintf(stderr, "trap_costs: %s: %s\n", what, strerror(errno));
    exit(3);
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The caller's loop: every getppid() must give want. */
static void calls(const char *name, long want)
{
    double means[MAX_ROUNDS];
    for (long k = 0; k < rounds; k++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            if (syscall(SYS_getppid) != want)
                die("getppid gave a wrong answer");
        means[k] = (now_ns() - t0) / (double)n;
    }
    qsort(means, (size_t)rounds, sizeof(double), by_value);
    printf("%s %.1f %.1f\n", name, means[0], means[rounds / 2]);
    if (fflush(stdout) != 0)
        die("stdout");
}

static long install(unsigned int action, unsigned int flags)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("PR_SET_NO_NEW_PRIVS");
    long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
    if (r < 0)
        die("seccomp");
    return r;
}

static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)info;
    ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RAX] = ANSWER;
}

static void wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        exit(3);
}

static void plain_and_sigsys(void)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        calls("plain", getppid());
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        if (sigaction(SIGSYS, &sa, NULL) < 0)
            die("sigaction");
        install(SECCOMP_RET_TRAP, 0);
        calls("sigsys", ANSWER);
        exit(0);
    }
    wait_child(pid);
}

static void send_fd(int sock, int fd)
{
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (sendmsg(sock, &msg, 0) != 1)
        die("sendmsg");
}

/* The child calls; this process supervises as mosix-remote does. */
static void notif(const char *name, int sync_wake)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (close(sp[0]) < 0)
            die("close");
        int listener = (int)install(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
        send_fd(sp[1], listener);
        if (close(listener) < 0)
            die("close");
        calls(name, ANSWER);
        exit(0);
    }
    if (close(sp[1]) < 0)
        die("close");
    int listener = mosix_receive_fd(sp[0]); /* mosix-remote's own (forward_channel.c) */
    if (listener < 0)
        die("no listener came");
    if (sync_wake) {
        /* the flags go by value, not through a pointer */
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
            die("SECCOMP_IOCTL_NOTIF_SET_FLAGS");
    }
    for (;;) {
        struct pollfd p[2] = {{listener, POLLIN, 0}, {sp[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0)
            die("poll");
        if (p[1].revents || !(p[0].revents & POLLIN))
            break; /* the child ended */
        struct seccomp_notif req;
        memset(&req, 0, sizeof(req));
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == ENOENT || errno == EINTR)
                continue;
            die("SECCOMP_IOCTL_NOTIF_RECV");
        }
        struct seccomp_notif_resp resp;
        memset(&resp, 0, sizeof(resp));
        resp.id = req.id;
        resp.val = ANSWER;
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
            die("SECCOMP_IOCTL_NOTIF_SEND");
    }
    if (close(listener) < 0 || close(sp[0]) < 0)
        die("close");
    wait_child(pid);
}

int main(int argc, char **argv)
{
    n = argc == 3 ? atol(argv[1]) : 0;
    rounds = argc == 3 ? atol(argv[2]) : 0;
    if (n < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        return 2;
    if (fflush(stdout) != 0)
        die("stdout");
    plain_and_sigsys();
    notif("notif", 1);
    notif("notif-async", 0);
    return 0;
}
