/* mosix_exec.c - start a program under the MOSIX discipline, in place.
 *
 * Usage: mosix-exec [-r] -m MODE -p PROG [-s SHIM] [-c FD] [-k UMASK] [-l RES:SOFT:HARD]...
 *                   -- NAME ARGV0 [ARGS...]
 *
 *   -X DIR  (repeated, at most 10) a private temporary directory (mosrun -X):
 *         the tree gets a mount namespace of its own with a tmpfs on DIR
 *         (private_dirs.h), made before the guard is forked
 *   -P FD the files to put in the -X directories first (mosrun -R; private_dirs.h)
 *   -L MB the -X directories' files together take at most MB MiB (the node
 *         agent's [private] home_mb, told to mosrun in Register's answer): a write
 *         beyond fails with ENOSPC.  Without it, half the memory.  A user who runs
 *         this launcher without it limits only their own use of memory.
 *   -r    a migrated process's remote copy (mosix-remote): the base filter
 *         without listener or guard (see install_remote_discipline)
 *
 *   MODE  u, e or w: the unsupported-call mode; n: no discipline (`native`)
 *   PROG  the name in error messages (mosrun, mosenv, native)
 *   SHIM  the preload shim, put first in LD_PRELOAD
 *   NAME  the program, searched in PATH as execvp does
 *   -c -k -l  `native` started by the node agent: the caller's directory, umask
 *         and limits, set just before the program is executed (native_state.h)
 *
 * mosrun execs this launcher, which (same pid throughout, so `mosrun prog &`
 * gives $! = the program's pid), unless it already runs under the discipline
 * (an inner mosrun: the outer filter and guard serve it, the new mode is in
 * MOSIX_INHERIT):
 *   1. fixes RLIMIT_NOFILE at 1024;
 *   2. forks the guard (mosix_guard.c) before any filter exists, not dumpable;
 *   3. sets no_new_privs and installs the base filter with a listener;
 *   4. passes the listener to the guard and waits for its acknowledgement (the
 *      guard first announces itself to the node agent, which then watches it:
 *      the tree's tag comes with the acknowledgement, into MOSIX_GUARD);
 *   5. drops set-id credentials (if an administrator made it set-id), restores
 *      the variables mosenv saved (the dynamic loader strips them from a set-id
 *      program), prepends the shim to LD_PRELOAD;
 *   6. executes the program.  Exit statuses of its own failures: 125 (mosrun
 *      failed), 126 (found but not runnable), 127 (not found). */
#include "forward_wire.h"
#include "mosix_shim.h"
#include "native_state.h"
#include "private_dirs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp_table.h"

#define EXIT_USAGE 125
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127
#define NOFILE_LIMIT 1024
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define SAVED_LIST "MOSIX_SAVED_ENV"
#define SAVED_PREFIX "MOSIX_SAVED_"

extern char **environ;

static const char *prog = "mosrun";

/* One line on stderr, prefixed with the command's name, and exit. */
static void die(int status, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

/* The length of the valid UTF-8 sequence at ``s`` (at most ``left`` bytes), or
 * 0 when it is not one: overlong forms and surrogates are not. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    unsigned c = s[0];
    size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2
                        : (c & 0xf8) == 0xf0 ? 3 : 4;
    if (n == 4 || left - 1 < n)
        return 0;
    uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1f) : n == 2 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k <= n; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    static const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (cp >= 0x80 && cp < 0xa0)
        return 0; /* a C1 control: shown as its code, like a byte */
    return n + 1;
}

/* A user's word (the program's name) for a message, as mosix.display.shown
 * renders it: control characters (C0, DEL, C1) and invalid UTF-8 as \xNN, so
 * that no escape sequence reaches the terminal and the message stays one
 * line.  Cut to fit ``cap``. */
static const char *shown(const char *word, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)word;
    size_t len = strlen(word), i = 0, o = 0;
    while (i < len && o + 5 < cap) {
        size_t n = utf8_sequence(s + i, len - i);
        if (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))
            n = 0; /* a C0 control or DEL */
        if (n == 0) {
            unsigned code = s[i];
            size_t used = 1;
            if (code == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] < 0xa0) {
                code = s[i + 1]; /* a C1 control written in UTF-8 */
                used = 2;
            }
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", code);
            i += used;
            continue;
        }
        if (o + n >= cap)
            break;
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
    die(EXIT_USAGE, "usage: mosix-exec -m u|e|w|n -p PROG [-s SHIM] [-c FD] [-d /DIR] [-k UMASK] "
                    "[-l RES:SOFT:HARD]... [-X /DIR]... [-P FD] [-L MB] -- NAME ARGV0 [ARGS...]");
}

/* ------------------------------------------------------------ rlimit */

static void fix_open_files(void)
{
    struct rlimit now;
    if (getrlimit(RLIMIT_NOFILE, &now) != 0)
        die(EXIT_USAGE, "cannot read RLIMIT_NOFILE: %s", strerror(errno));
    rlim_t want = now.rlim_max < NOFILE_LIMIT ? now.rlim_max : NOFILE_LIMIT;
    if (now.rlim_cur == want && now.rlim_max == want)
        return;
    struct rlimit fixed = {want, want};
    if (setrlimit(RLIMIT_NOFILE, &fixed) != 0)
        fprintf(stderr, "%s: warning: cannot fix RLIMIT_NOFILE at %d: %s\n", prog, NOFILE_LIMIT,
                strerror(errno));
}

/* ------------------------------------------------------------ the guard */

static int send_fd(int sock, int fd)
{
    char byte = 'L';
    return mosix_send_fd(sock, &byte, 1, fd, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

/* Fork the guard (double fork: it is reparented away from the program and
 * never shows up in its wait()).  Returns our end of the socket. */
static int start_guard(enum mosix_mode mode, char **argv, const struct private_dirs *dirs)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        die(EXIT_USAGE, "cannot start the guard: socketpair: %s", strerror(errno));
    fflush(NULL);
    int root = (int)getpid(); /* the program's, as we become it */
    /* The guard is born not dumpable (the flag is copied by fork): its memory
     * (/proc/GUARD/mem) is root's and the program cannot ptrace it, not even
     * between the fork and its first instruction. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        die(EXIT_USAGE, "cannot start the guard: PR_SET_DUMPABLE: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0)
        die(EXIT_USAGE, "cannot start the guard: fork: %s", strerror(errno));
    if (child > 0 && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
        die(EXIT_USAGE, "PR_SET_DUMPABLE: %s", strerror(errno));
    if (child == 0) {
        (void)close(sv[0]); /* ours: nothing to do if it fails */
        pid_t guard = fork();
        if (guard < 0)
            _exit(1);
        if (guard > 0)
            _exit(0);
        mosix_guard_run(sv[1], mode, root, argv, dirs);
    }
    (void)close(sv[1]); /* ours: nothing to do if it fails */
    int status;
    while (waitpid(child, &status, 0) < 0) {
        if (errno == ECHILD)
            break; /* SIGCHLD ignored: reaped already */
        if (errno != EINTR)
            die(EXIT_USAGE, "cannot start the guard: waitpid: %s", strerror(errno));
    }
    return sv[0];
}

static int under_discipline(void)
{
    long r = syscall(MOSIX_PROBE_NR);
    return r < 0 && errno >= MOSIX_PROBE_ERRNO_BASE && errno <= MOSIX_PROBE_ERRNO_BASE + 2;
}

/* A migrated process's remote copy (-r): the base filter without a listener
 * and without a guard, because the kernel allows one listener per process and
 * the forward filter's (mosix-remote) is that one.  The calls the base filter
 * would hand to the guard then fail with ENOSYS, as under -e. */
static void install_remote_discipline(enum mosix_mode mode)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die(EXIT_USAGE, "cannot set no_new_privs: %s", strerror(errno));
    static struct sock_filter insns[MOSIX_FILTER_MAX];
    struct sock_fprog fprog;
    fprog.len = (unsigned short)mosix_filter_build(MOSIX_FILTER_BASE, mode, 0, 0, insns);
    fprog.filter = insns;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &fprog) != 0)
        die(EXIT_USAGE, "cannot install the system-call filter: %s", strerror(errno));
}

static void install_discipline(enum mosix_mode mode, char **argv,
                               const struct private_dirs *dirs, int private_files)
{
    if (under_discipline()) {
        /* the discipline refuses unshare and mount to the program */
        if (dirs->count > 0)
            die(EXIT_USAGE, "-X: not available to a mosrun started under another mosrun");
        return; /* an inner mosrun: the outer filter and guard serve it (the kernel
                 * allows one listener per process); its mode is in MOSIX_INHERIT */
    }
    const char *what = NULL;
    int err = private_dirs_enter(dirs, &what);
    if (err < 0)
        die(EXIT_USAGE, "-X: %s: %s", what, strerror(-err));
    if (private_files >= 0 && (err = private_dirs_fill(dirs, private_files, &what)) < 0)
        die(EXIT_USAGE, "-X: %s: %s", what, strerror(-err));
    fix_open_files();
    int sock = start_guard(mode, argv, dirs);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        die(EXIT_USAGE, "cannot set no_new_privs: %s", strerror(errno));
    static struct sock_filter insns[MOSIX_FILTER_MAX];
    struct sock_fprog fprog;
    enum mosix_filter_kind kind = dirs->count > 0 ? MOSIX_FILTER_BASE_PRIVATE : MOSIX_FILTER_BASE;
    fprog.len = (unsigned short)mosix_filter_build(kind, mode, 0, 0, insns);
    fprog.filter = insns;
    int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                                &fprog);
    if (listener < 0) {
        int err = errno;
        (void)close(sock); /* the guard sees the end of the socket and exits */
        die(EXIT_USAGE, "cannot install the system-call filter: %s", strerror(err));
    }
    if (send_fd(sock, listener) != 0)
        die(EXIT_USAGE, "cannot hand the filter to the guard: %s", strerror(errno));
    if (close(listener) != 0)
        die(EXIT_USAGE, "close: %s", strerror(errno));
    char ack[1 + MOSIX_GUARD_TAG_MAX + 1];
    ssize_t n;
    do
        n = read(sock, ack, sizeof(ack) - 1);
    while (n < 0 && errno == EINTR);
    if (n < 1 || ack[0] != 'k')
        die(EXIT_USAGE, "the guard process did not start");
    (void)close(sock); /* ours: nothing to do if it fails */
    ack[n] = '\0';
    /* the node agent watches the guard: the tree's tag, else none (an inherited
     * one named another tree's guard) */
    if (n > 1 ? setenv(MOSIX_GUARD_ENV, ack + 1, 1) != 0 : unsetenv(MOSIX_GUARD_ENV) != 0)
        die(EXIT_USAGE, "%s: %s", MOSIX_GUARD_ENV, strerror(errno));
}

/* ------------------------------------------------------------ environment */

/* A set-id launcher (an administrator's installation) runs the program with
 * the user's own ids; the program's exec is then not in secure mode, so the
 * variables restored below reach it. */
static void drop_set_id(void)
{
    if (getauxval(AT_SECURE) == 0)
        return;
    gid_t gid = getgid();
    uid_t uid = getuid();
    if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
        die(EXIT_USAGE, "cannot drop the launcher's set-id: %s", strerror(errno));
}

/* mosenv: put back what a set-id launcher's dynamic loader removed. */
static void restore_saved(void)
{
    const char *list = getenv(SAVED_LIST);
    if (list == NULL)
        return;
    char *names = strdup(list);
    if (names == NULL)
        die(EXIT_USAGE, "out of memory");
    for (char *save, *name = strtok_r(names, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
        char key[256];
        if (snprintf(key, sizeof(key), "%s%s", SAVED_PREFIX, name) >= (int)sizeof(key))
            continue;
        const char *value = getenv(key);
        if (value != NULL && setenv(name, value, 1) != 0)
            die(EXIT_USAGE, "setenv %s: %s", name, strerror(errno));
        if (unsetenv(key) != 0)
            die(EXIT_USAGE, "unsetenv %s: %s", key, strerror(errno));
    }
    free(names);
    if (unsetenv(SAVED_LIST) != 0)
        die(EXIT_USAGE, "unsetenv %s: %s", SAVED_LIST, strerror(errno));
}

static int listed(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ": ");
        if (len == n && strncmp(p, item, n) == 0)
            return 1;
        p += len;
        p += strspn(p, ": ");
    }
    return 0;
}

static void preload_shim(const char *shim)
{
    const char *old = getenv("LD_PRELOAD");
    if (old != NULL && listed(old, shim))
        return;
    if (old == NULL || *old == '\0') {
        if (setenv("LD_PRELOAD", shim, 1) != 0)
            die(EXIT_USAGE, "setenv LD_PRELOAD: %s", strerror(errno));
        return;
    }
    size_t len = strlen(shim) + 1 + strlen(old) + 1;
    char *value = malloc(len);
    if (value == NULL)
        die(EXIT_USAGE, "out of memory");
    snprintf(value, len, "%s:%s", shim, old);
    if (setenv("LD_PRELOAD", value, 1) != 0)
        die(EXIT_USAGE, "setenv LD_PRELOAD: %s", strerror(errno));
    free(value);
}

/* ------------------------------------------------------------ exec */

/* execvp's search with env(1)'s statuses: 126 found but not runnable, 127 not found. */
static void exec_program(const char *name, char **argv) __attribute__((noreturn));
static void exec_program(const char *name, char **argv)
{
    if (*name == '\0')
        die(EXIT_NOT_FOUND, "'': %s", strerror(ENOENT));
    const char *path = strchr(name, '/') ? "" : getenv("PATH");
    if (path == NULL)
        path = DEFAULT_PATH;
    int denied = 0, last = 0;
    size_t argc = 0;
    while (argv[argc])
        argc++;
    const char *p = path;
    for (;;) {
        char file[4096];
        int n;
        if (strchr(name, '/')) {
            n = snprintf(file, sizeof(file), "%s", name);
        } else {
            size_t len = strcspn(p, ":");
            n = snprintf(file, sizeof(file), "%.*s/%s", (int)(len ? len : 1), len ? p : ".",
                         name);
        }
        int err = ENAMETOOLONG;
        if (n < (int)sizeof(file)) {
            execve(file, argv, environ);
            err = errno;
        }
        if (err == ENOEXEC) { /* a script without '#!': run it with the shell */
            char **sh = calloc(argc + 2, sizeof(char *));
            if (sh == NULL)
                die(EXIT_USAGE, "out of memory");
            sh[0] = (char *)"/bin/sh";
            sh[1] = file;
            for (size_t j = 1; j < argc; j++)
                sh[j + 1] = argv[j];
            execve("/bin/sh", sh, environ);
            err = errno;
            free(sh);
        }
        if (err == EACCES || err == EPERM || err == EISDIR || err == ETXTBSY) {
            if (!denied)
                denied = err;
        } else if (err != ENOENT && err != ENOTDIR && err != ENAMETOOLONG && err != ELOOP) {
            last = err;
        }
        if (strchr(name, '/'))
            break;
        p += strcspn(p, ":");
        if (*p == '\0')
            break;
        p++;
    }
    int err = denied ? denied : last;
    char seen[4 * 4096 + 1];
    if (err)
        die(EXIT_CANNOT_RUN, "%s: %s", shown(name, seen, sizeof(seen)), strerror(err));
    die(EXIT_NOT_FOUND, "%s: %s", shown(name, seen, sizeof(seen)), strerror(ENOENT));
}

int main(int argc, char **argv)
{
    const char *mode_text = NULL, *shim = NULL;
    int i = 1, remote = 0;
    struct native_state caller;
    struct private_dirs dirs = {.count = 0};
    int private_files = -1;
    native_state_init(&caller);
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-r") == 0) {
            remote = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "-m") == 0)
            mode_text = argv[++i];
        else if (strcmp(argv[i], "-p") == 0)
            prog = argv[++i];
        else if (strcmp(argv[i], "-s") == 0)
            shim = argv[++i];
        else if (strcmp(argv[i], "-X") == 0) {
            if (argv[i + 1][0] != '/' || private_dirs_add(&dirs, argv[i + 1]) != 0)
                usage();
            i++;
        } else if (strcmp(argv[i], "-P") == 0) {
            char *end;
            long fd = strtol(argv[++i], &end, 10);
            if (*end != '\0' || fd < 0 || fd > 1 << 20)
                usage();
            private_files = (int)fd;
        } else if (strcmp(argv[i], "-L") == 0) {
            if (private_dirs_limit(&dirs, argv[++i]) != 0)
                usage();
        }
        else if (native_state_option(&caller, argv[i], argv[i + 1]) == 1)
            i++;
        else
            usage();
    }
    if (private_files >= 0 && dirs.count == 0)
        usage(); /* files for directories not given */
    if (mode_text == NULL || argc - i < 2 || strlen(mode_text) != 1 ||
        strchr("uewn", mode_text[0]) == NULL)
        usage();
    if (mode_text[0] != 'n') {
        enum mosix_mode mode = mode_text[0] == 'u'   ? MOSIX_MODE_KILL
                               : mode_text[0] == 'e' ? MOSIX_MODE_ENOSYS
                                                     : MOSIX_MODE_WARN;
        if (remote)
            install_remote_discipline(mode);
        else
            install_discipline(mode, argv, &dirs, private_files);
    }
    drop_set_id();
    restore_saved();
    if (shim != NULL)
        preload_shim(shim);
    const char *what = NULL;
    int err = native_state_apply(&caller, &what);
    if (err < 0)
        die(EXIT_USAGE, "%s: %s", what, strerror(-err));
    exec_program(argv[i], argv + i + 1);
}
