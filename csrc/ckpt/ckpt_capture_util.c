/* ckpt_capture_util.c - errors, termination signals, /proc reading, timing. */
#include "ckpt_capture_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG "mosix-ckpt"

char ck_why[512];
volatile sig_atomic_t ck_interrupted;
volatile sig_atomic_t ck_terminations;

static struct ck_hooks hooks;
static int cleaned, discarded; /* each runs once: a failure inside one only reports */

void ck_set_hooks(const struct ck_hooks *h) { hooks = *h; }

static void run_cleanup(int discard)
{
    if (!cleaned) {
        cleaned = 1;
        if (hooks.cleanup)
            hooks.cleanup();
    }
    if (discard && !discarded) {
        discarded = 1;
        if (hooks.discard)
            hooks.discard();
    }
}

static void vline(const char *fmt, va_list ap, int with_errno, int err)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    /* one line: a path with a newline in it must not split the message */
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = '?';
    if (with_errno)
        fprintf(stderr, "%s: %s: %s\n", PROG, msg, strerror(err));
    else
        fprintf(stderr, "%s: %s\n", PROG, msg);
}

_Noreturn void ck_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap, 0, 0);
    va_end(ap);
    run_cleanup(1);
    exit(CK_EXIT_FAILED);
}

_Noreturn void ck_fail_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap, 1, err);
    va_end(ap);
    run_cleanup(1);
    exit(CK_EXIT_FAILED);
}

void ck_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap, 0, 0);
    va_end(ap);
}

_Noreturn void ck_not_yet(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap, 0, 0);
    va_end(ap);
    run_cleanup(1);
    exit(CK_EXIT_NOT_YET);
}

_Noreturn void ck_refuse(const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (cleaned) { /* refused while cleaning up after a failure: the failure stands */
        run_cleanup(1);
        exit(CK_EXIT_FAILED);
    }
    run_cleanup(0);
    if (hooks.refused)
        hooks.refused(reason);
    exit(CK_EXIT_REFUSED);
}

void ck_set_why(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ck_why, sizeof(ck_why), fmt, ap);
    va_end(ap);
}

void ck_set_why_errno(const char *fmt, ...)
{
    int err = errno;
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ck_why, sizeof(ck_why), "%s: %s", msg, strerror(err));
    errno = err;
}

/* ------------------------------------------------------------ signals */

static void on_termination(int sig)
{
    (void)sig;
    ck_interrupted = 1;
    ck_terminations++;
}

void ck_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_termination; /* no SA_RESTART: a blocked write returns EINTR */
    if (sigemptyset(&sa.sa_mask) < 0)
        ck_fail_errno("sigemptyset");
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            ck_fail_errno("sigaction");
    sa.sa_handler = SIG_IGN; /* a closed -f pipe is a write error (EPIPE), not death */
    if (sigaction(SIGPIPE, &sa, NULL) < 0)
        ck_fail_errno("sigaction");
}

void ck_check_interrupted(void)
{
    if (ck_interrupted)
        ck_fail("interrupted by a signal");
}

/* ------------------------------------------------------------ small tools */

void *ck_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        ck_fail("out of memory (%zu bytes)", n);
    return p;
}

uint64_t ck_now_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        ck_fail_errno("clock_gettime");
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ck_realtime_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
        ck_fail_errno("clock_gettime");
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

ssize_t ck_read_small(int dirfd, const char *path, char *buf, size_t cap)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (close(fd) < 0)
        return -1;
    return (ssize_t)len;
}

ssize_t ck_readlink(int dirfd, const char *path, char *buf, size_t cap)
{
    ssize_t n = readlinkat(dirfd, path, buf, cap);
    if (n < 0)
        return -1;
    if ((size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    buf[n] = '\0';
    return n;
}

int ck_status_value(const char *status, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *line = status; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            const char *v = line + klen + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t n = strcspn(v, "\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

int ck_parse_u64(const char *s, int base, uint64_t *out)
{
    if (!*s)
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end != '\0' || *s == '-')
        return -1;
    *out = v;
    return 0;
}

int ck_mem_read(int memfd, uint64_t addr, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(memfd, (char *)buf + done, len - done, (off_t)(addr + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

int ck_mem_write(int memfd, uint64_t addr, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(memfd, (const char *)buf + done, len - done, (off_t)(addr + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}
