/* shim_checkpoint.c - MOSIX's /proc/self/checkpoint* files, in the preload shim.
 *
 * MOSIX programs ask for checkpoints by writing to
 *
 *   /proc/self/checkpoint          a positive number: take a checkpoint now
 *   /proc/self/checkpointfile      a file name: as mosrun -C
 *   /proc/self/checkpointlimit     a number: as mosrun -N
 *   /proc/self/checkpointinterval  minutes: as mosrun -A
 *
 * (or /proc/PID/... with the process's own pid).  Linux has no such files: the
 * shim interposes open, open64, openat, openat64 (and their _2 fortify forms),
 * fopen and fopen64 for exactly these paths and returns a memfd, remembered
 * in a small table by its identity (device and inode), not its number: a
 * shell's redirection (`echo 1 > /proc/self/checkpoint` in bash or dash)
 * opens it, moves it to descriptor 1 with dup2, closes the original, lets the
 * builtin write, and puts the old descriptor 1 back with dup2.  When the last
 * descriptor of the process that refers to the memfd goes (close, fclose: the
 * fd is duplicated first, so what stdio flushes can be read; or dup2/dup3
 * over it) the shim parses what was written and makes MOSIX's checkpoint call
 * (mosix_checkpoint.h), after the memfd itself is closed, so the checkpoint
 * does not contain it.  An error of the call is close()'s (fclose()'s) error;
 * dup2 and dup3 succeeded and report none (a shell would take it for a failed
 * redirection).  Reading one of the files gives what this process last set
 * ("0" when nothing, empty for the file name).
 *
 * Every other path goes straight to the real function after a prefix test;
 * close, fclose, dup2 and dup3 check one counter while no such file is open.
 * Only under the discipline (the probe answers): elsewhere the paths are left
 * alone. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "raw_syscall.h"
#include "seccomp_table.h"

#define EXPORT __attribute__((visibility("default")))

#define PATH_BYTES 4096 /* a file name and its NUL */
#define TRACKED_MAX 16  /* such files open at once in a process */

enum ckpt_kind { KIND_NONE = -1, KIND_NOW, KIND_FILE, KIND_LIMIT, KIND_INTERVAL };
static const char *const kind_names[] = {"checkpoint", "checkpointfile", "checkpointlimit",
                                         "checkpointinterval"};
enum { OP_CHECKPOINT = 1, OP_SET_FILE = 2, OP_SET_LIMIT = 3, OP_SET_INTERVAL = 4 };

struct tracked {
    int used;
    int kind;
    int writing;
    pid_t pid; /* a child that inherits the descriptor does not act on it */
    dev_t dev;
    ino_t ino;
};

static struct tracked table[TRACKED_MAX];
static int tracked_count; /* 0: close/fclose take the fast path */
static char lock_flag;
static int disciplined;   /* 0 unknown, 1 under mosrun, -1 not */

/* What this process last set, for reads. */
static char last_file[PATH_BYTES];
static int last_limit, last_interval;

static void lock(void)
{
    while (__atomic_test_and_set(&lock_flag, __ATOMIC_ACQUIRE))
        (void)mosix_raw0(SYS_sched_yield);
}

static void unlock(void)
{
    __atomic_clear(&lock_flag, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ real functions */

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open2_fn)(const char *, int);
typedef int (*openat2_fn)(int, const char *, int);
typedef FILE *(*fopen_fn)(const char *, const char *);
typedef int (*close_fn)(int);
typedef int (*fclose_fn)(FILE *);
typedef int (*dup2_fn)(int, int);
typedef int (*dup3_fn)(int, int, int);

/* dlsym's next definition of ``name``, looked up once. */
#define REAL(type, name)                                                                 \
    static type real_##name(void)                                                        \
    {                                                                                    \
        static type fn;                                                                  \
        type f = __atomic_load_n(&fn, __ATOMIC_ACQUIRE);                                 \
        if (f == NULL) {                                                                 \
            f = (type)dlsym(RTLD_NEXT, #name);                                           \
            __atomic_store_n(&fn, f, __ATOMIC_RELEASE);                                  \
        }                                                                                \
        return f;                                                                        \
    }
REAL(open_fn, open)
REAL(open_fn, open64)
REAL(openat_fn, openat)
REAL(openat_fn, openat64)
REAL(open2_fn, __open_2)
REAL(open2_fn, __open64_2)
REAL(openat2_fn, __openat_2)
REAL(openat2_fn, __openat64_2)
REAL(fopen_fn, fopen)
REAL(fopen_fn, fopen64)
REAL(close_fn, close)
REAL(fclose_fn, fclose)
REAL(dup2_fn, dup2)
REAL(dup3_fn, dup3)

/* ------------------------------------------------------------ which path */

static int under_mosrun(void)
{
    if (disciplined == 0) {
        long probe = mosix_raw0(MOSIX_PROBE_NR);
        disciplined = probe <= -MOSIX_PROBE_ERRNO_BASE && probe >= -(MOSIX_PROBE_ERRNO_BASE + 2)
                          ? 1
                          : -1;
    }
    return disciplined > 0;
}

/* "self/" or "<our pid>/" at p: the rest of the path, else NULL. */
static const char *own_process_dir(const char *p)
{
    if (strncmp(p, "self/", 5) == 0)
        return p + 5;
    long pid = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9' && pid < 1L << 31)
        pid = pid * 10 + (*q++ - '0');
    if (q == p || *q != '/' || *p == '0' || pid != mosix_raw0(SYS_getpid))
        return NULL;
    return q + 1;
}

static int __attribute__((noinline)) kind_of_proc_path(const char *path)
{
    const char *rest = own_process_dir(path + 6);
    if (rest == NULL || strncmp(rest, "checkpoint", 10) != 0)
        return KIND_NONE;
    for (int k = KIND_NOW; k <= KIND_INTERVAL; k++)
        if (strcmp(rest, kind_names[k]) == 0)
            return under_mosrun() ? k : KIND_NONE;
    return KIND_NONE;
}

/* The kind of checkpoint file ``path`` names (KIND_NONE for every other path). */
static inline int kind_of(const char *path)
{
    if (path == NULL || path[0] != '/' || path[1] != 'p' || strncmp(path, "/proc/", 6) != 0)
        return KIND_NONE;
    return kind_of_proc_path(path);
}

/* ------------------------------------------------------------ the table */

static int track(int fd, int kind, int writing)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    lock();
    for (int i = 0; i < TRACKED_MAX; i++)
        if (!table[i].used) {
            table[i] = (struct tracked){1, kind, writing, getpid(), st.st_dev, st.st_ino};
            __atomic_add_fetch(&tracked_count, 1, __ATOMIC_RELEASE);
            unlock();
            return 0;
        }
    unlock();
    errno = EMFILE;
    return -1;
}

static int any_tracked(void)
{
    return __atomic_load_n(&tracked_count, __ATOMIC_ACQUIRE) != 0;
}

/* Whether ``fd`` refers to one of our memfds; its entry into ``out``. */
static int tracked_at(int fd, struct tracked *out)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 0;
    int found = 0;
    lock();
    for (int i = 0; i < TRACKED_MAX; i++)
        if (table[i].used && table[i].dev == st.st_dev && table[i].ino == st.st_ino) {
            *out = table[i];
            found = 1;
            break;
        }
    unlock();
    return found;
}

/* Whether a descriptor of this process still refers to the memfd of ``t``
 * (/proc/self/fd; without it, none is assumed, as before shells were known). */
static int still_referenced(const struct tracked *t)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return 0;
    int found = 0, own = dirfd(dir);
    struct dirent *e;
    while (!found && (e = readdir(dir)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        struct stat st;
        if (end == e->d_name || *end != '\0' || fd == own)
            continue;
        found = fstat((int)fd, &st) == 0 && st.st_dev == t->dev && st.st_ino == t->ino;
    }
    (void)closedir(dir); /* a directory stream of our own: nothing to do if it fails */
    return found;
}

/* Forget the memfd of ``t`` once no descriptor refers to it.  Returns 1 if it
 * was forgotten now (the caller acts on what was written). */
static int forget_if_gone(const struct tracked *t)
{
    if (still_referenced(t))
        return 0;
    int found = 0;
    lock();
    for (int i = 0; i < TRACKED_MAX; i++)
        if (table[i].used && table[i].dev == t->dev && table[i].ino == t->ino) {
            table[i].used = 0;
            __atomic_sub_fetch(&tracked_count, 1, __ATOMIC_RELEASE);
            found = 1;
            break;
        }
    unlock();
    return found;
}

/* ------------------------------------------------------------ opening */

/* What reading the file shows: what this process last set. */
static size_t current_text(int kind, char *buf, size_t cap)
{
    int n = 0;
    lock();
    if (kind == KIND_FILE)
        n = last_file[0] ? snprintf(buf, cap, "%s\n", last_file) : 0;
    else
        n = snprintf(buf, cap, "%d\n",
                     kind == KIND_LIMIT ? last_limit : kind == KIND_INTERVAL ? last_interval : 0);
    unlock();
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static int fill(int fd, int kind)
{
    char buf[PATH_BYTES + 2];
    size_t len = current_text(kind, buf, sizeof(buf));
    return pwrite(fd, buf, len, 0) == (ssize_t)len ? 0 : -1;
}

static int __attribute__((noinline)) open_checkpoint_file(int kind, int flags)
{
    int writing = (flags & O_ACCMODE) != O_RDONLY;
    int fd = memfd_create("mosix-checkpoint", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0)
        return -1;
    int failed = !writing && fill(fd, kind) != 0;
    if (!failed && (flags & O_APPEND))
        failed = fcntl(fd, F_SETFL, O_APPEND) != 0;
    if (failed || track(fd, kind, writing) != 0) {
        int saved = errno;
        (void)real_close()(fd); /* ours, unused: nothing to do if it fails */
        errno = saved;
        return -1;
    }
    return fd;
}

static FILE *__attribute__((noinline)) fopen_checkpoint_file(int kind, const char *mode)
{
    int flags = (mode[0] == 'r' && strchr(mode, '+') == NULL) ? O_RDONLY : O_WRONLY;
    if (strchr(mode, 'e') != NULL)
        flags |= O_CLOEXEC;
    int fd = open_checkpoint_file(kind, flags);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, mode);
    if (f == NULL) {
        int saved = errno;
        struct tracked t;
        if (tracked_at(fd, &t)) {
            (void)real_close()(fd); /* ours, unused: nothing to do if it fails */
            (void)forget_if_gone(&t);
        }
        errno = saved;
    }
    return f;
}

/* open(2)'s optional mode argument. */
#define MODE_ARG(flags, mode)                                           \
    do {                                                                \
        if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) { \
            va_list ap;                                                 \
            va_start(ap, flags);                                        \
            mode = va_arg(ap, mode_t);                                  \
            va_end(ap);                                                 \
        }                                                               \
    } while (0)

EXPORT int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    int kind = kind_of(path);
    if (kind != KIND_NONE)
        return open_checkpoint_file(kind, flags);
    return real_open()(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    int kind = kind_of(path);
    if (kind != KIND_NONE)
        return open_checkpoint_file(kind, flags);
    return real_open64()(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    int kind = kind_of(path);
    if (kind != KIND_NONE)
        return open_checkpoint_file(kind, flags);
    return real_openat()(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    int kind = kind_of(path);
    if (kind != KIND_NONE)
        return open_checkpoint_file(kind, flags);
    return real_openat64()(dirfd, path, flags, mode);
}

EXPORT int __open_2(const char *path, int flags)
{
    int kind = kind_of(path);
    return kind != KIND_NONE ? open_checkpoint_file(kind, flags) : real___open_2()(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
    int kind = kind_of(path);
    return kind != KIND_NONE ? open_checkpoint_file(kind, flags) : real___open64_2()(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    int kind = kind_of(path);
    return kind != KIND_NONE ? open_checkpoint_file(kind, flags)
                             : real___openat_2()(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    int kind = kind_of(path);
    return kind != KIND_NONE ? open_checkpoint_file(kind, flags)
                             : real___openat64_2()(dirfd, path, flags);
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
    int kind = kind_of(path);
    return kind != KIND_NONE ? fopen_checkpoint_file(kind, mode) : real_fopen()(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
    int kind = kind_of(path);
    return kind != KIND_NONE ? fopen_checkpoint_file(kind, mode) : real_fopen64()(path, mode);
}

/* ------------------------------------------------------------ closing */

/* A number >= 0 between optional blanks (a trailing newline included). */
static int parse_count(const char *s, long *out)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '+')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        if (v > 0x7fffffffL)
            return -1;
    }
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (*s != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Make the call.  Returns 0, or -1 with errno. */
static int call(long op, long arg)
{
    long r = mosix_raw3(MOSIX_CHECKPOINT_NR, op, arg, 0);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return 0;
}

/* What was written to a checkpoint file of ``kind`` (``len`` bytes, NUL-terminated). */
static int act(int kind, char *text, size_t len)
{
    if (len == 0)
        return 0; /* opened for writing, nothing written */
    if (memchr(text, '\0', len) != NULL) {
        errno = EINVAL;
        return -1;
    }
    if (kind == KIND_FILE) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = '\0';
        if (len == 0 || len >= PATH_BYTES) {
            errno = len == 0 ? EINVAL : ENAMETOOLONG;
            return -1;
        }
        if (call(OP_SET_FILE, (long)text) != 0)
            return -1;
        lock();
        memcpy(last_file, text, len + 1);
        unlock();
        return 0;
    }
    long v;
    if (parse_count(text, &v) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (kind == KIND_NOW)
        return v > 0 ? call(OP_CHECKPOINT, 0) : 0;
    if (call(kind == KIND_LIMIT ? OP_SET_LIMIT : OP_SET_INTERVAL, v) != 0)
        return -1;
    lock();
    *(kind == KIND_LIMIT ? &last_limit : &last_interval) = (int)v;
    unlock();
    return 0;
}

/* Read what was written (from ``fd``, still open, one of ours), for act(). */
static ssize_t written(int fd, const struct tracked *t, char *buf, size_t cap)
{
    if (!t->writing || t->pid != getpid())
        return 0;
    ssize_t n = pread(fd, buf, cap - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* After a descriptor of ``t`` went: act on ``text`` (``n`` bytes, or -1 with
 * ``saved`` the read's errno) if that was the last one.  0, or -1 with errno. */
static int after_last(const struct tracked *t, char *text, ssize_t n, int saved)
{
    if (!forget_if_gone(t))
        return 0; /* another descriptor (a shell's descriptor 1) still has it */
    if (n < 0) {
        errno = saved;
        return -1;
    }
    return act(t->kind, text, (size_t)n);
}

static int __attribute__((noinline)) close_checkpoint_file(int fd, const struct tracked *t)
{
    char text[PATH_BYTES + 2];
    ssize_t n = written(fd, t, text, sizeof(text));
    int saved = errno;
    if (real_close()(fd) != 0)
        return -1;
    return after_last(t, text, n, saved);
}

static int __attribute__((noinline)) fclose_checkpoint_file(FILE *f, int fd,
                                                            const struct tracked *t)
{
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int r = real_fclose()(f); /* flushes what stdio holds into the memfd */
    if (copy < 0) {
        (void)forget_if_gone(t);
        return r == 0 ? EOF : r; /* no copy to read: errno from fcntl (EMFILE) */
    }
    char text[PATH_BYTES + 2];
    ssize_t n = written(copy, t, text, sizeof(text));
    int saved = errno;
    (void)real_close()(copy); /* ours: nothing to do if it fails */
    if (r != 0) {
        (void)forget_if_gone(t);
        return r;
    }
    return after_last(t, text, n, saved) == 0 ? 0 : EOF;
}

/* dup2/dup3 over a descriptor of one of our memfds: the shell's redirection
 * ends.  The checkpoint call's error has no one to go to (see the top). */
static int __attribute__((noinline)) dup_over_checkpoint_file(int oldfd, int newfd, int flags,
                                                              int three,
                                                              const struct tracked *t)
{
    char text[PATH_BYTES + 2];
    ssize_t n = written(newfd, t, text, sizeof(text));
    int read_errno = errno;
    int r = three ? real_dup3()(oldfd, newfd, flags) : real_dup2()(oldfd, newfd);
    if (r < 0)
        return r;
    int kept = errno;
    (void)after_last(t, text, n, read_errno);
    errno = kept;
    return r;
}

EXPORT int close(int fd)
{
    struct tracked t;
    if (any_tracked() && tracked_at(fd, &t))
        return close_checkpoint_file(fd, &t);
    return real_close()(fd);
}

EXPORT int fclose(FILE *f)
{
    struct tracked t;
    int fd;
    if (any_tracked() && f != NULL && (fd = fileno(f)) >= 0 && tracked_at(fd, &t))
        return fclose_checkpoint_file(f, fd, &t);
    return real_fclose()(f);
}

EXPORT int dup2(int oldfd, int newfd)
{
    struct tracked t;
    if (any_tracked() && oldfd != newfd && tracked_at(newfd, &t))
        return dup_over_checkpoint_file(oldfd, newfd, 0, 0, &t);
    return real_dup2()(oldfd, newfd);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
    struct tracked t;
    if (any_tracked() && oldfd != newfd && tracked_at(newfd, &t))
        return dup_over_checkpoint_file(oldfd, newfd, flags, 1, &t);
    return real_dup3()(oldfd, newfd, flags);
}
