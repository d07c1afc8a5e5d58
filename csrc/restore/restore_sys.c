/* restore_sys.c - the restorer's small library: messages, memory functions
 * the compiler may call, and reading small /proc files.  No libc. */
#include "restore.h"

#include <asm/errno.h>
#include <linux/fcntl.h>

/* The compiler may emit calls to these even with -ffreestanding. */
void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

int mem_equal(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

__attribute__((noreturn)) void sys_exit(int status)
{
    for (;;)
        (void)mosix_raw1(__NR_exit_group, status);
}

/* ------------------------------------------------------------ messages */

#define PREFIX_MAX 256
#define MSG_MAX 512

static char prefix[PREFIX_MAX] = "mosix-restore";
static char line[PREFIX_MAX + MSG_MAX + 4];
static size_t line_len, text_start;
static int error_fd = 2;

static int tell_program; /* coming home: the program's stderr hears it too */
void msg_fd(int fd) { error_fd = fd; }
void msg_tell_program(void) { tell_program = 1; }

int msg_fd_get(void) { return error_fd; }

void msg_prefix(const char *p)
{
    size_t n = 0;
    while (p[n] && n < PREFIX_MAX - 1) {
        prefix[n] = p[n];
        n++;
    }
    prefix[n] = '\0';
}

static void put_char(char c)
{
    if (line_len < sizeof(line) - 2)
        line[line_len++] = c;
}

void msg_str(const char *s)
{
    while (*s)
        put_char(*s++);
}

void msg_begin(void)
{
    line_len = 0;
    msg_str(prefix);
    msg_str(": ");
    text_start = line_len;
}

void msg_hex(uint64_t v)
{
    char d[16];
    int n = 0;
    do {
        d[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    msg_str("0x");
    while (n)
        put_char(d[--n]);
}

void msg_dec(uint64_t v)
{
    char d[20];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        put_char(d[--n]);
}

void msg_range(uint64_t start, uint64_t end)
{
    msg_hex(start);
    put_char('-');
    msg_hex(end);
}

static const struct {
    int err;
    const char *text;
} errors[] = {
    {EPERM, "Operation not permitted"},
    {ENOENT, "No such file or directory"},
    {EINTR, "Interrupted system call"},
    {EIO, "Input/output error"},
    {EBADF, "Bad file descriptor"},
    {EAGAIN, "Resource temporarily unavailable"},
    {ENOMEM, "Cannot allocate memory"},
    {EACCES, "Permission denied"},
    {EFAULT, "Bad address"},
    {EBUSY, "Device or resource busy"},
    {EEXIST, "File exists"},
    {EISDIR, "Is a directory"},
    {EINVAL, "Invalid argument"},
    {ENOSYS, "Function not implemented"},
    {ECONNRESET, "Connection reset by peer"},
};

void msg_err(long err)
{
    msg_str(": ");
    for (size_t i = 0; i < LEN(errors); i++) {
        if (errors[i].err == -err) {
            msg_str(errors[i].text);
            return;
        }
    }
    msg_str("error ");
    msg_dec((uint64_t)-err);
}

static void write_line(int fd)
{
    size_t done = 0;
    while (done < line_len) {
        long n = mosix_raw3(__NR_write, fd, line + done, line_len - done);
        if (n == -EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere to report it: the status still tells */
        done += (size_t)n;
    }
}

/* One write: the line is never interleaved with other output. */
__attribute__((noreturn)) void msg_refuse(void)
{
    if (line_len == text_start)
        msg_str("cannot restore");
    line[line_len++] = '\n';
    write_line(error_fd);
    if (tell_program && error_fd != 2)
        write_line(2); /* the process ends: its user learns why */
    sys_exit(EXIT_REFUSED);
}

__attribute__((noreturn)) void refuse(const char *text)
{
    msg_begin();
    msg_str(text);
    msg_refuse();
}

/* ------------------------------------------------------------ /proc files */

size_t read_small_file(const char *path, char *buf, size_t cap)
{
    long fd = mosix_raw4(__NR_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        msg_begin();
        msg_str("cannot open ");
        msg_str(path);
        msg_err(fd);
        msg_refuse();
    }
    size_t len = 0;
    for (;;) {
        long n = mosix_raw3(__NR_read, fd, buf + len, cap - 1 - len);
        if (n == -EINTR)
            continue;
        if (n < 0) {
            msg_begin();
            msg_str("cannot read ");
            msg_str(path);
            msg_err(n);
            msg_refuse();
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap - 1) {
            msg_begin();
            msg_str(path);
            msg_str(" is too long");
            msg_refuse();
        }
    }
    buf[len] = '\0';
    long rc = mosix_raw1(__NR_close, fd);
    if (rc < 0) {
        msg_begin();
        msg_str("cannot close ");
        msg_str(path);
        msg_err(rc);
        msg_refuse();
    }
    return len;
}

const char *parse_hex(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    for (;; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (*p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else
            break;
        v = v << 4 | d;
    }
    *out = v;
    return p;
}
