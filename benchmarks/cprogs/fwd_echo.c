/* fwd_echo.c - the bare round trip a forwarded call is compared with.
 *
 *   fwd_echo serve ADDRESS          listen on ADDRESS, port 0; print the port;
 *                                   echo frames of one client until it closes
 *   fwd_echo client ADDRESS PORT FILE N ROUNDS
 *
 * The client builds the very frames mosix-remote sends for fwd_calls.c's
 * calls (64-byte write and read, open, close), with the real marshaller
 * (fwd_request on its own memory; FILE is a scratch file), and learns each
 * reply's size by executing the request once here (fwd_execute).  Then, per
 * call, it sends the request frame N times, and the server answers each with
 * a reply frame of that size: the same bytes each way over the same kind of
 * connection (TCP, TCP_NODELAY), written and read with the channel's own
 * functions (forward_channel.c), with nothing trapped, marshalled or executed.
 * Prints, per call, "size NAME REQUEST_BYTES REPLY_BYTES" (whole frames) and
 * "NAME BEST MEDIAN" (ns per round trip over ROUNDS rounds, as fwd_calls).
 * The server takes the reply's payload length from the frame's id. */
#include "forward.h"
#include "forward_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64

static unsigned char req[FWD_PAYLOAD_MAX], rep[FWD_PAYLOAD_MAX];

static void die(const char *what)
{
    fprintf(stderr, "fwd_echo: %s: %s\n", what, strerror(errno));
    exit(3);
}

static void nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        die("TCP_NODELAY");
}

static struct sockaddr_in address(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "fwd_echo: %s: not an IPv4 address\n", ip);
        exit(2);
    }
    return a;
}

static int serve(const char *ip)
{
    struct sockaddr_in a = address(ip, 0);
    socklen_t alen = sizeof(a);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0)
        die("listen");
    printf("%d\n", ntohs(a.sin_port));
    if (fflush(stdout) != 0)
        die("stdout");
    int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        die("accept");
    nodelay(c);
    memset(rep, 0, sizeof(rep));
    for (;;) { /* as the deputy reads: the header, then the payload */
        struct fwd_frame f;
        if (fwd_read_full(c, &f, sizeof(f)) < 0)
            return 0; /* the client is done */
        if (f.len > sizeof(req) || f.id > sizeof(rep) || fwd_read_full(c, req, f.len) < 0)
            die("read");
        if (fwd_send_frame(c, FWD_FRAME_REPLY, 0, rep, (size_t)f.id) < 0)
            die("send");
    }
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

struct call {
    const char *name;
    size_t req_len, rep_len;
    unsigned char *frame; /* a copy of the request payload */
};

/* The request for (nr, args) as mosix-remote builds it, and its reply's size. */
static struct call make_call(const char *name, long nr, uint64_t a0, uint64_t a1, uint64_t a2,
                             uint64_t a3)
{
    uint64_t args[6] = {a0, a1, a2, a3, 0, 0};
    long len = fwd_request(getpid(), nr, args, req, sizeof(req));
    if (len <= 0) {
        errno = (int)-len;
        die(name);
    }
    struct call c = {name, (size_t)len, 0, malloc((size_t)len)};
    if (c.frame == NULL)
        die("malloc");
    memcpy(c.frame, req, (size_t)len);
    c.rep_len = fwd_execute(req, (size_t)len, rep, sizeof(rep));
    struct fwd_reply head;
    memcpy(&head, rep, sizeof(head));
    if (head.ret < 0) {
        errno = (int)-head.ret;
        die(name);
    }
    return c;
}

static void round_trips(int s, const struct call *c, long n, long rounds)
{
    double means[MAX_ROUNDS];
    for (long k = 0; k < rounds; k++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            struct fwd_frame f;
            if (fwd_send_frame(s, FWD_FRAME_REQUEST, c->rep_len, c->frame, c->req_len) < 0 ||
                fwd_read_full(s, &f, sizeof(f)) < 0 || f.len != c->rep_len ||
                fwd_read_full(s, rep, f.len) < 0)
                die("round trip");
        }
        means[k] = (now_ns() - t0) / (double)n;
    }
    qsort(means, (size_t)rounds, sizeof(double), by_value);
    printf("size %s %zu %zu\n", c->name, sizeof(struct fwd_frame) + c->req_len,
           sizeof(struct fwd_frame) + c->rep_len);
    printf("%s %.1f %.1f\n", c->name, means[0], means[rounds / 2]);
}

static int client(const char *ip, int port, const char *path, long n, long rounds)
{
    /* the calls of fwd_calls.c, on a scratch file of 64 bytes */
    static char buf[64];
    memset(buf, 'x', sizeof(buf));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
        lseek(fd, 0, SEEK_SET) != 0)
        die(path);
    uint64_t ufd = (uint64_t)fd, ubuf = (uint64_t)(uintptr_t)buf;
    struct call read_c = make_call("read", SYS_read, ufd, ubuf, sizeof(buf), 0);
    struct call write_c = make_call("write", SYS_write, ufd, ubuf, sizeof(buf), 0);
    struct call open_c = make_call("open", SYS_openat, (uint64_t)(int64_t)AT_FDCWD,
                                   (uint64_t)(uintptr_t)path, O_RDONLY | O_CLOEXEC, 0);
    struct fwd_reply head;
    memcpy(&head, rep, sizeof(head)); /* the descriptor open just gave */
    struct call close_c = make_call("close", SYS_close, (uint64_t)head.ret, 0, 0, 0);
    if (close(fd) < 0 || unlink(path) < 0)
        die(path);

    struct sockaddr_in a = address(ip, port);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    nodelay(s);
    round_trips(s, &write_c, n, rounds);
    round_trips(s, &read_c, n, rounds);
    round_trips(s, &open_c, n, rounds);
    round_trips(s, &close_c, n, rounds);
    return fflush(stdout) == 0 ? 0 : 3;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc == 7 && strcmp(argv[1], "client") == 0) {
        long n = atol(argv[5]), rounds = atol(argv[6]);
        if (n >= 1 && rounds >= 1 && rounds <= MAX_ROUNDS)
            return client(argv[2], atoi(argv[3]), argv[4], n, rounds);
    }
    fprintf(stderr, "usage: fwd_echo serve ADDRESS | client ADDRESS PORT FILE N ROUNDS\n");
    return 2;
}
