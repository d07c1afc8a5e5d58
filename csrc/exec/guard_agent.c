/* guard_agent.c - the guard's client of the node agent (see guard_agent.h).
 *
 * One connection per request: connect (non-blocking), send one frame (4-byte
 * big-endian length + a CBOR map), read one reply frame, close.  Everything is
 * driven by the guard's poll loop. */
#include "guard_agent.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "forward_wire.h"
#include "guard_cbor.h"

#define FRAME_MAX (1u << 20)      /* mosix.protocol.MAX_FRAME */
#define PATH_BYTES 4096           /* a path and its NUL */
#define OUT_MAX (PATH_BYTES + 256) /* the largest request frame */
#define UNCLAIMED_MS 10000        /* how long an answer waits for its re-issued call */

struct request {
    int used;
    pid_t tid;      /* the notifying task */
    unsigned op;    /* enum mosix_checkpoint_op */
    uint64_t arg;   /* the call's argument: a re-issued call has the same */
    __u64 id;       /* the newest notification of this call */
    int conn;       /* the agent connection; -1 once the answer is known */
    unsigned char out[OUT_MAX];
    size_t out_len, out_sent;
    unsigned char head[4];
    size_t head_got;
    unsigned char *body;
    size_t body_len, body_got;
    int error;          /* the answer: 0 or an errno */
    long long expires;  /* unclaimed answer: forgotten then (monotonic ms) */
};

static char agent_socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
static int have_socket;
static struct request requests[GUARD_AGENT_MAX];
static int in_use; /* requests[] entries used: 0 keeps the guard's loop as it was */

void guard_agent_init(const char *socket_path)
{
    if (socket_path == NULL || *socket_path == '\0')
        return; /* none: every request fails with ECANCELED */
    char cwd[PATH_BYTES] = "";
    if (socket_path[0] != '/' && getcwd(cwd, sizeof(cwd)) == NULL)
        return; /* relative, and the guard is about to leave this directory */
    int n = snprintf(agent_socket, sizeof(agent_socket), "%s%s%s", cwd, cwd[0] ? "/" : "",
                     socket_path);
    have_socket = n > 0 && (size_t)n < sizeof(agent_socket); /* else too long for sun_path */
}

static long long now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0; /* cannot fail for CLOCK_MONOTONIC */
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ the table */

static struct request *find(pid_t tid)
{
    for (size_t i = 0; i < GUARD_AGENT_MAX; i++)
        if (requests[i].used && requests[i].tid == tid)
            return &requests[i];
    return NULL;
}

static void close_conn(struct request *r)
{
    if (r->conn >= 0)
        (void)close(r->conn); /* ours: nothing to do if it fails */
    r->conn = -1;
    free(r->body);
    r->body = NULL;
}

static void release(struct request *r)
{
    close_conn(r);
    r->used = 0;
    in_use--;
}

static struct request *take_slot(void)
{
    for (size_t i = 0; i < GUARD_AGENT_MAX; i++)
        if (!requests[i].used) {
            struct request *r = &requests[i];
            memset(r, 0, sizeof(*r));
            r->used = 1;
            r->conn = -1;
            in_use++;
            return r;
        }
    return NULL;
}

/* ------------------------------------------------------------ answers */

static void fill(struct seccomp_notif_resp *resp, __u64 id, int error)
{
    resp->id = id;
    resp->val = 0;
    resp->error = -error;
    resp->flags = 0;
}

/* Answer the newest notification of ``r`` if it is still waiting.  Returns 1
 * when answered, 0 when it is gone (interrupted: a re-issued call may come). */
static int answer_newest(int listener, struct request *r)
{
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &r->id) != 0)
        return 0;
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof(resp));
    fill(&resp, r->id, r->error);
    return ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0;
}

/* The agent's answer is known: give it, or keep it for the re-issued call. */
static void settle(int listener, struct request *r, int error)
{
    close_conn(r);
    r->error = error;
    if (answer_newest(listener, r)) {
        release(r);
        return;
    }
    r->expires = now_ms() + UNCLAIMED_MS;
}

int guard_agent_expire(void)
{
    if (in_use == 0)
        return -1;
    long long now = now_ms(), next = -1;
    for (size_t i = 0; i < GUARD_AGENT_MAX; i++) {
        struct request *r = &requests[i];
        if (!r->used || r->conn >= 0)
            continue;
        if (r->expires <= now) {
            release(r);
            continue;
        }
        if (next < 0 || r->expires < next)
            next = r->expires;
    }
    if (next < 0)
        return -1;
    long long wait = next - now;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

/* ------------------------------------------------------------ the arguments */

/* The thread group of task ``tid`` (the agent knows processes, not threads). */
static pid_t tgid_of(pid_t tid)
{
    char path[48], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tid;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd); /* ours: nothing to do if it fails */
    if (n <= 0)
        return tid;
    buf[n] = '\0';
    const char *t = strstr(buf, "\nTgid:");
    long v = t ? strtol(t + 6, NULL, 10) : 0;
    return v > 0 ? (pid_t)v : tid;
}

/* Read the NUL-terminated path at ``addr`` in task ``tid`` (split at the page
 * boundary, so a string ending just before an unmapped page is read). */
static int read_path(pid_t tid, uint64_t addr, char out[PATH_BYTES])
{
    size_t first = PATH_BYTES - (size_t)(addr % PATH_BYTES);
    struct iovec local = {out, PATH_BYTES};
    struct iovec remote[2] = {{(void *)(uintptr_t)addr, first},
                              {(void *)(uintptr_t)(addr + first), PATH_BYTES - first}};
    ssize_t n = process_vm_readv(tid, &local, 1, remote, first == PATH_BYTES ? 1 : 2, 0);
    if (n < 0)
        return errno == ESRCH ? ECANCELED : errno;
    if (memchr(out, '\0', (size_t)n) == NULL)
        return n == PATH_BYTES ? ENAMETOOLONG : EFAULT;
    return 0;
}

/* The path made absolute against the task's working directory. */
static int absolute_path(pid_t tid, char path[PATH_BYTES])
{
    if (path[0] == '/')
        return 0;
    char link[48], cwd[PATH_BYTES];
    snprintf(link, sizeof(link), "/proc/%d/cwd", (int)tid);
    ssize_t n = readlink(link, cwd, sizeof(cwd));
    if (n <= 0 || n >= (ssize_t)sizeof(cwd))
        return n >= (ssize_t)sizeof(cwd) ? ENAMETOOLONG : ECANCELED;
    size_t len = strlen(path), base = (size_t)n - (cwd[n - 1] == '/');
    if (base + 1 + len >= PATH_BYTES)
        return ENAMETOOLONG;
    memmove(path + base + 1, path, len + 1);
    memcpy(path, cwd, base);
    path[base] = '/';
    return 0;
}

static int file_argument(int listener, const struct seccomp_notif *req, char path[PATH_BYTES])
{
    int err = read_path((pid_t)req->pid, req->data.args[1], path);
    if (err == 0 && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id) != 0)
        err = ECANCELED; /* the memory read was not the caller's any more */
    if (err == 0 && path[0] == '\0')
        err = EINVAL;
    if (err == 0)
        err = absolute_path((pid_t)req->pid, path);
    return err;
}

/* ------------------------------------------------------------ the request */

/* The request frame into r->out.  Returns 0, or -1 if it does not fit. */
static int encode(struct request *r, pid_t pid, const char *file)
{
    static const char *const keys[] = {"", "", MOSIX_MSG_CHECKPOINT_SETTINGS_FILE,
                                        MOSIX_MSG_CHECKPOINT_SETTINGS_LIMIT,
                                        MOSIX_MSG_CHECKPOINT_SETTINGS_INTERVAL};
    struct cbor_out o = {r->out + 4, sizeof(r->out) - 4, 0, 0};
    if (r->op == MOSIX_CKPT_OP_CHECKPOINT) {
        cbor_put_map(&o, 4);
        cbor_put_cstr(&o, MOSIX_MSG_KEY_OP);
        cbor_put_cstr(&o, MOSIX_MSG_CHECKPOINT_OP);
        cbor_put_cstr(&o, MOSIX_MSG_CHECKPOINT_PID);
        cbor_put_uint(&o, (uint64_t)pid);
        cbor_put_cstr(&o, MOSIX_MSG_CHECKPOINT_ACTION);
        cbor_put_cstr(&o, MOSIX_MSG_ACTION_CHECKPOINT);
        cbor_put_cstr(&o, MOSIX_MSG_CHECKPOINT_ORIGIN);
        cbor_put_cstr(&o, MOSIX_MSG_ORIGIN_PROGRAM);
    } else {
        cbor_put_map(&o, 3);
        cbor_put_cstr(&o, MOSIX_MSG_KEY_OP);
        cbor_put_cstr(&o, MOSIX_MSG_CHECKPOINT_SETTINGS_OP);
        cbor_put_cstr(&o, MOSIX_MSG_CHECKPOINT_SETTINGS_PID);
        cbor_put_uint(&o, (uint64_t)pid);
        cbor_put_cstr(&o, keys[r->op]);
        if (r->op == MOSIX_CKPT_OP_SET_FILE)
            cbor_put_bytes(&o, file, strlen(file)); /* a file name: any bytes */
        else
            cbor_put_uint(&o, r->arg);
    }
    if (o.overflow)
        return -1;
    for (int i = 0; i < 4; i++)
        r->out[i] = (unsigned char)(o.len >> (24 - 8 * i));
    r->out_len = 4 + o.len;
    return 0;
}

static int connect_agent(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, agent_socket);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        (void)close(fd); /* ours: nothing to do if it fails */
        return -1;       /* absent, refused, or its backlog full (EAGAIN) */
    }
    return fd;
}

/* Send what is left of the request.  Returns 0, or -1 when the agent is gone. */
static int send_more(struct request *r)
{
    while (r->out_sent < r->out_len) {
        ssize_t n = send(r->conn, r->out + r->out_sent, r->out_len - r->out_sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        r->out_sent += (size_t)n;
    }
    return 0;
}

/* Start the request of ``r`` (op and arg set).  Returns 0 or an errno. */
static int start(struct request *r, const struct seccomp_notif *req, const char *file)
{
    if (!have_socket)
        return ECANCELED;
    if (encode(r, tgid_of((pid_t)req->pid), file) != 0)
        return ENAMETOOLONG;
    r->conn = connect_agent();
    if (r->conn < 0 || send_more(r) != 0)
        return ECANCELED;
    return 0;
}

/* The value of op 3 and 4: an int >= 0 (the call's argument is a long). */
static int count_argument(uint64_t arg)
{
    return (int64_t)arg >= 0 && (int64_t)arg <= INT_MAX ? 0 : EINVAL;
}

int guard_agent_call(int listener, const struct seccomp_notif *req,
                     struct seccomp_notif_resp *resp)
{
    uint64_t op = req->data.args[0], arg = req->data.args[1];
    if (op < MOSIX_CKPT_OP_CHECKPOINT || op > MOSIX_CKPT_OP_SET_INTERVAL) {
        fill(resp, req->id, EINVAL);
        return 1;
    }
    if (op == MOSIX_CKPT_OP_CHECKPOINT)
        arg = 0; /* ignored */
    struct request *r = find((pid_t)req->pid);
    if (r != NULL && r->op == op && r->arg == arg) { /* re-issued after an interruption */
        r->id = req->id;
        if (r->conn >= 0)
            return 0; /* still waiting for the agent */
        fill(resp, req->id, r->error);
        release(r);
        return 1;
    }
    if (r != NULL)
        release(r); /* that call ended (EINTR): this is a new one */

    char file[PATH_BYTES] = "";
    int err = 0;
    if (op == MOSIX_CKPT_OP_SET_FILE)
        err = file_argument(listener, req, file);
    else if (op != MOSIX_CKPT_OP_CHECKPOINT)
        err = count_argument(arg);
    if (err == 0 && !have_socket)
        err = ECANCELED;
    if (err == 0 && (r = take_slot()) == NULL)
        err = EAGAIN;
    if (err == 0) {
        r->tid = (pid_t)req->pid;
        r->op = (unsigned)op;
        r->arg = arg;
        r->id = req->id;
        err = start(r, req, file);
        if (err == 0)
            return 0;
        release(r);
    }
    fill(resp, req->id, err);
    return 1;
}

/* ------------------------------------------------------------ the reply */

/* The answer a reply means for the request. */
static int meaning(const struct request *r, const unsigned char *body, size_t len)
{
    struct agent_reply reply;
    if (cbor_decode_reply(body, len, &reply) != 0)
        return ECANCELED;
    if (r->op == MOSIX_CKPT_OP_CHECKPOINT)
        return strcmp(reply.op, MOSIX_MSG_CHECKPOINTED_OP) == 0 && reply.failed[0] == '\0' ? 0 : ECANCELED;
    return strcmp(reply.op, MOSIX_MSG_DONE_OP) == 0 ? 0 : ECANCELED;
}

/* Read what has arrived.  Returns -1 while incomplete, else the answer. */
static int receive_more(struct request *r)
{
    for (;;) {
        unsigned char *into;
        size_t want;
        if (r->head_got < sizeof(r->head)) {
            into = r->head + r->head_got;
            want = sizeof(r->head) - r->head_got;
        } else {
            into = r->body + r->body_got;
            want = r->body_len - r->body_got;
        }
        ssize_t n = recv(r->conn, into, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        if (n <= 0)
            return ECANCELED; /* the agent closed (or failed) before its reply */
        if (r->head_got < sizeof(r->head)) {
            r->head_got += (size_t)n;
            if (r->head_got < sizeof(r->head))
                continue;
            r->body_len = (size_t)r->head[0] << 24 | (size_t)r->head[1] << 16 |
                          (size_t)r->head[2] << 8 | r->head[3];
            if (r->body_len == 0 || r->body_len > FRAME_MAX)
                return ECANCELED;
            r->body = malloc(r->body_len);
            if (r->body == NULL)
                return ECANCELED;
            continue;
        }
        r->body_got += (size_t)n;
        if (r->body_got == r->body_len)
            return meaning(r, r->body, r->body_len);
    }
}

size_t guard_agent_pollfds(struct pollfd *fds)
{
    size_t n = 0;
    if (in_use == 0)
        return 0;
    for (size_t i = 0; i < GUARD_AGENT_MAX; i++) {
        const struct request *r = &requests[i];
        if (!r->used || r->conn < 0)
            continue;
        fds[n].fd = r->conn;
        fds[n].events = (short)(POLLIN | (r->out_sent < r->out_len ? POLLOUT : 0));
        fds[n].revents = 0;
        n++;
    }
    return n;
}

static struct request *by_conn(int fd)
{
    for (size_t i = 0; i < GUARD_AGENT_MAX; i++)
        if (requests[i].used && requests[i].conn == fd)
            return &requests[i];
    return NULL;
}

void guard_agent_events(int listener, const struct pollfd *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct request *r = fds[i].revents ? by_conn(fds[i].fd) : NULL;
        if (r == NULL)
            continue;
        if ((fds[i].revents & POLLOUT) && send_more(r) != 0) {
            settle(listener, r, ECANCELED);
            continue;
        }
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
            continue;
        int answer = receive_more(r);
        if (answer >= 0)
            settle(listener, r, answer);
    }
}

/* ------------------------------------------------------------ the hello */

/* Wait (poll) for ``events`` on ``fd`` until ``deadline``.  Returns 0 or -1. */
static int wait_for(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        return (p.revents & events) ? 0 : -1;
    }
}

static int send_hello(int fd, int listener, const unsigned char *out, size_t len,
                      long long deadline)
{
    size_t sent = 0;
    while (sent < len) {
        /* the listener goes with the first byte */
        ssize_t n = mosix_send_fd(fd, out + sent, len - sent, sent == 0 ? listener : -1,
                                  MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_for(fd, POLLOUT, deadline) != 0)
                return -1;
            continue;
        }
        if (n <= 0)
            return -1;
        sent += (size_t)n;
    }
    return 0;
}

static int receive_exactly(int fd, unsigned char *into, size_t want, long long deadline)
{
    size_t got = 0;
    while (got < want) {
        ssize_t n = recv(fd, into + got, want - got, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_for(fd, POLLIN, deadline) != 0)
                return -1;
            continue;
        }
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

#define HELLO_REPLY_MAX 4096 /* "done", or a one-line refusal */

int guard_agent_hello(int listener, pid_t root, char mode)
{
    if (!have_socket)
        return 0;
    unsigned char out[128];
    struct cbor_out o = {out + 4, sizeof(out) - 4, 0, 0};
    char letter[2] = {mode, '\0'};
    cbor_put_map(&o, 3);
    cbor_put_cstr(&o, MOSIX_MSG_KEY_OP);
    cbor_put_cstr(&o, MOSIX_MSG_GUARD_HELLO_OP);
    cbor_put_cstr(&o, MOSIX_MSG_GUARD_HELLO_ROOT);
    cbor_put_uint(&o, (uint64_t)root);
    cbor_put_cstr(&o, MOSIX_MSG_GUARD_HELLO_MODE);
    cbor_put_cstr(&o, letter);
    if (o.overflow)
        return 0;
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(o.len >> (24 - 8 * i));
    long long deadline = now_ms() + GUARD_AGENT_HELLO_MS;
    int fd = connect_agent();
    if (fd < 0)
        return 0;
    int watched = 0;
    unsigned char head[4], *body = NULL;
    if (send_hello(fd, listener, out, 4 + o.len, deadline) == 0 &&
        receive_exactly(fd, head, sizeof(head), deadline) == 0) {
        size_t len = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3];
        struct agent_reply reply;
        if (len > 0 && len <= HELLO_REPLY_MAX && (body = malloc(len)) != NULL &&
            receive_exactly(fd, body, len, deadline) == 0 &&
            cbor_decode_reply(body, len, &reply) == 0)
            watched = strcmp(reply.op, MOSIX_MSG_DONE_OP) == 0;
    }
    free(body);
    (void)close(fd); /* ours: nothing to do if it fails */
    return watched;
}
