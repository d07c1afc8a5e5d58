/* mosix-zpipe - a migration image compressed on its way over a slow link.
 *
 * Usage: mosix-zpipe -c LEVEL [-s]   compress stdin to stdout (one zstd frame)
 *        mosix-zpipe -d [-s]         decompress stdin (zstd frames) to stdout
 *        mosix-zpipe -a              exit 0 if zstd can be loaded here, 3 if not
 *
 * The agents put it between mosix-ckpt and the image's connection on the
 * sending node, and between the connection and the image's reader (the
 * restorer through mosix-remote, or the deputy coming home) on the receiving
 * one; the image format itself is unchanged.  zstd is loaded with dlopen
 * ("libzstd.so.1", the runtime library alone: no -dev package to build), so a
 * node without it builds and runs, and simply cannot compress (-a says so and
 * the agents leave compression off).
 *
 * The compressor flushes what it holds whenever its input has nothing more
 * to read for the moment (pre-copy rounds, the end of a record burst): a
 * receiver never waits for bytes sitting in the compressor.  -s: one line on
 * stderr at the end, "in=BYTES out=BYTES" (bytes read, bytes written).
 *
 * Exit status: 0 done; 1 failed (one line on stderr: a broken connection, a
 * damaged or truncated compressed stream); 2 bad usage; 3 no zstd here. */
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ZP_EXIT_FAILED 1
#define ZP_EXIT_USAGE 2
#define ZP_EXIT_NO_ZSTD 3
#define BUF_BYTES (1u << 20)

/* The few declarations of zstd's stable API used here (zstd.h, "stable" section):
 * declared by hand so that only the runtime library is needed. */
typedef struct {
    const void *src;
    size_t size;
    size_t pos;
} zstd_in;
typedef struct {
    void *dst;
    size_t size;
    size_t pos;
} zstd_out;
enum { ZSTD_E_CONTINUE = 0, ZSTD_E_FLUSH = 1, ZSTD_E_END = 2 };
enum { ZSTD_C_COMPRESSION_LEVEL = 100 };

static struct {
    void *(*create_cctx)(void);
    size_t (*set_parameter)(void *, int, int);
    size_t (*compress_stream2)(void *, zstd_out *, zstd_in *, int);
    void *(*create_dctx)(void);
    size_t (*decompress_stream)(void *, zstd_out *, zstd_in *);
    unsigned (*is_error)(size_t);
    const char *(*error_name)(size_t);
} Z;

static unsigned long long bytes_in, bytes_out;

_Noreturn __attribute__((format(printf, 2, 3))) static void die(int status, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "mosix-zpipe: %s\n", line);
    exit(status);
}

/* zstd's functions; 0 when the library or one of them is missing. */
static int load_zstd(void)
{
    void *lib = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return 0;
    *(void **)&Z.create_cctx = dlsym(lib, "ZSTD_createCCtx");
    *(void **)&Z.set_parameter = dlsym(lib, "ZSTD_CCtx_setParameter");
    *(void **)&Z.compress_stream2 = dlsym(lib, "ZSTD_compressStream2");
    *(void **)&Z.create_dctx = dlsym(lib, "ZSTD_createDCtx");
    *(void **)&Z.decompress_stream = dlsym(lib, "ZSTD_decompressStream");
    *(void **)&Z.is_error = dlsym(lib, "ZSTD_isError");
    *(void **)&Z.error_name = dlsym(lib, "ZSTD_getErrorName");
    return Z.create_cctx && Z.set_parameter && Z.compress_stream2 && Z.create_dctx &&
           Z.decompress_stream && Z.is_error && Z.error_name;
}

static size_t read_some(void *buf, size_t cap)
{
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, cap);
        if (n >= 0) {
            bytes_in += (unsigned long long)n;
            return (size_t)n;
        }
        if (errno != EINTR)
            die(ZP_EXIT_FAILED, "reading: %s", strerror(errno));
    }
}

static void write_all(const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die(ZP_EXIT_FAILED, "writing: %s", n < 0 ? strerror(errno) : "nothing written");
        p += n;
        len -= (size_t)n;
        bytes_out += (unsigned long long)n;
    }
}

/* Whether stdin has nothing to read right now (the writer paused). */
static int input_idle(void)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, 0);
        if (r >= 0)
            return r == 0;
        if (errno != EINTR)
            die(ZP_EXIT_FAILED, "poll: %s", strerror(errno));
    }
}

/* Feed in to the compressor with directive how; write what comes out.  For
 * FLUSH and END, until the compressor holds nothing. */
static void compress_step(void *cctx, zstd_in *in, int how, unsigned char *obuf)
{
    for (;;) {
        zstd_out out = {obuf, BUF_BYTES, 0};
        size_t left = Z.compress_stream2(cctx, &out, in, how);
        if (Z.is_error(left))
            die(ZP_EXIT_FAILED, "compressing: %s", Z.error_name(left));
        write_all(obuf, out.pos);
        if (how == ZSTD_E_CONTINUE ? in->pos == in->size : left == 0)
            return;
    }
}

static void compress(int level, unsigned char *ibuf, unsigned char *obuf)
{
    void *cctx = Z.create_cctx();
    if (!cctx)
        die(ZP_EXIT_FAILED, "cannot make a compression context");
    size_t rc = Z.set_parameter(cctx, ZSTD_C_COMPRESSION_LEVEL, level);
    if (Z.is_error(rc))
        die(ZP_EXIT_FAILED, "level %d: %s", level, Z.error_name(rc));
    int pending = 0; /* input given since the last flush */
    for (;;) {
        if (pending && input_idle()) {
            zstd_in none = {NULL, 0, 0};
            compress_step(cctx, &none, ZSTD_E_FLUSH, obuf);
            pending = 0;
        }
        size_t n = read_some(ibuf, BUF_BYTES);
        zstd_in in = {ibuf, n, 0};
        if (n == 0) {
            compress_step(cctx, &in, ZSTD_E_END, obuf);
            /* the end of the stream now, whoever else holds the connection */
            if (shutdown(STDOUT_FILENO, SHUT_WR) < 0 && errno != ENOTSOCK)
                die(ZP_EXIT_FAILED, "shutdown: %s", strerror(errno));
            return;
        }
        compress_step(cctx, &in, ZSTD_E_CONTINUE, obuf);
        pending = 1;
    }
}

static void decompress(unsigned char *ibuf, unsigned char *obuf)
{
    void *dctx = Z.create_dctx();
    if (!dctx)
        die(ZP_EXIT_FAILED, "cannot make a decompression context");
    size_t last = 1; /* 0: a frame ended and everything of it was written */
    for (;;) {
        size_t n = read_some(ibuf, BUF_BYTES);
        if (n == 0)
            break;
        zstd_in in = {ibuf, n, 0};
        while (in.pos < in.size) {
            zstd_out out = {obuf, BUF_BYTES, 0};
            last = Z.decompress_stream(dctx, &out, &in);
            if (Z.is_error(last))
                die(ZP_EXIT_FAILED, "a damaged compressed image: %s", Z.error_name(last));
            write_all(obuf, out.pos);
        }
        /* what the context still holds after the input was consumed */
        for (;;) {
            zstd_in none = {NULL, 0, 0};
            zstd_out out = {obuf, BUF_BYTES, 0};
            if (last == 0)
                break;
            last = Z.decompress_stream(dctx, &out, &none);
            if (Z.is_error(last))
                die(ZP_EXIT_FAILED, "a damaged compressed image: %s", Z.error_name(last));
            write_all(obuf, out.pos);
            if (out.pos < out.size)
                break; /* it needs more input */
        }
    }
    if (last != 0)
        die(ZP_EXIT_FAILED, "the compressed image ends short (%llu bytes came)", bytes_in);
}

_Noreturn static void usage(const char *why)
{
    fprintf(stderr, "mosix-zpipe: %s (usage: mosix-zpipe -c LEVEL [-s] | -d [-s] | -a)\n", why);
    exit(ZP_EXIT_USAGE);
}

int main(int argc, char **argv)
{
    int mode = 0, level = 0, stats = 0, c;
    opterr = 0; /* our own one line */
    while ((c = getopt(argc, argv, "c:dsa")) != -1) {
        switch (c) {
        case 'c': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < -100 || v > 22)
                usage("-c: a zstd level from -100 to 22");
            level = (int)v;
            mode = mode ? -1 : 'c';
            break;
        }
        case 'd':
        case 'a':
            mode = mode ? -1 : c;
            break;
        case 's':
            stats = 1;
            break;
        default:
            usage(optopt == 'c' ? "-c needs a level" : "an unknown option");
        }
    }
    if (mode <= 0 || optind != argc)
        usage("exactly one of -c, -d and -a, and no operands");
    if (!load_zstd()) {
        if (mode == 'a')
            return ZP_EXIT_NO_ZSTD;
        const char *why = dlerror();
        die(ZP_EXIT_NO_ZSTD, "libzstd.so.1 cannot be loaded: %s", why ? why : "a function is missing");
    }
    if (mode == 'a')
        return 0;
    struct sigaction ign = {.sa_handler = SIG_IGN};
    if (sigaction(SIGPIPE, &ign, NULL) < 0)
        die(ZP_EXIT_FAILED, "sigaction: %s", strerror(errno));
    unsigned char *ibuf = malloc(BUF_BYTES), *obuf = malloc(BUF_BYTES);
    if (!ibuf || !obuf)
        die(ZP_EXIT_FAILED, "out of memory");
    if (mode == 'c')
        compress(level, ibuf, obuf);
    else
        decompress(ibuf, obuf);
    if (stats && fprintf(stderr, "in=%llu out=%llu\n", bytes_in, bytes_out) < 0)
        return ZP_EXIT_FAILED;
    return 0;
}
