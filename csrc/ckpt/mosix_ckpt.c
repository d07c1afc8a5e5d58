/* mosix_ckpt.c - the checkpointer: write the image of a running process.
 *
 * Usage: mosix-ckpt (-o PATH | -f FD) [-a none|stop|exit|migrate] [-D ARG]...
 *                  [-O KEY=VALUE]... [-T] [-P N] PID
 *        mosix-ckpt -o PATH -i FD [-O KEY=VALUE]... PID
 *        mosix-ckpt -Z COPY PID
 *
 *   -o PATH   write the image to PATH (relative: to the process's current
 *             directory), through a temporary file renamed onto it when complete
 *   -f FD     write it to the open descriptor FD (file, pipe or socket: sequential)
 *   -a        afterwards: nothing (default), SIGSTOP the process, or SIGKILL it;
 *             migrate: the process stays stopped from the pause on (pipes and
 *             sockets are no reason to refuse: they stay at home); when the
 *             image is written, "captured" on stdout, then one line on stdin:
 *             "go" makes it execute the deputy (the -D words: its path, then
 *             its arguments; ckpt_handoff.c), or without -D (a remote copy
 *             that moves on) ends it with SIGKILL; anything else (or the
 *             end of stdin) lets it continue here, exit status 4
 *   -O        an extra line for the OPTIONS record (format.OPTION_KEYS)
 *   -T        timings on stderr: pause_us= total_us= bytes= pages= areas= threads=
 *             threads_us= (the part of the pause spent stopping and reading the
 *             threads besides the main one); with -P also precopy_rounds= (the
 *             first included) precopy_pages= precopy_pause_us= (a round's longest
 *             pause) precopy_unreliable= and image_us= captured_us= go_us=
 *             handed_us= (the final hold's steps, from its start)
 *   -P N      (-a migrate -f) live migration: the memory streamed while the
 *             process runs, then at most N rounds of the pages it wrote
 *             meanwhile, before the final image (ckpt_precopy.c); the receiver
 *             must be a restorer (it takes PRE_AREA/PRE_PAGES records)
 *   -i FD     PID is the deputy of a process that runs on another node, and FD
 *             carries the image of its copy there (captured there with -a
 *             migrate, held quiet): the image written is the process's own,
 *             the copy's memory and state with the deputy's descriptors,
 *             directory, umask, limits and pid (ckpt_away.c); the deputy is
 *             not stopped
 *   -Z COPY   reap COPY, the copy a killed checkpointer left as a zombie of PID
 *             (the agent's sweep after a failed capture)
 *
 * For tests and benchmarks, MOSIX_CKPT_NO_DIRECT (never O_DIRECT) and
 * MOSIX_CKPT_NO_PAGEMAP_SCAN (read /proc/PID/pagemap as before Linux 6.7)
 * select the fallback paths.
 *
 * Exit status: 0 written; 3 the process cannot be checkpointed (the image is
 * then the one line "mosrun: checkpoint of process PID failed: REASON", also
 * on stderr); 5 we may not checkpoint it (set-id, or as root another user's
 * process not under the discipline: one line on stderr, nothing created); 6 it
 * cannot be checkpointed yet (-a migrate of a process with more than one thread:
 * one line on stderr, nothing created);
 * 1 any other failure (one line on stderr, nothing under PATH, the process
 * left running as it was); 2 usage.
 *
 * As root, every operation on PATH is made by a child with the target's real
 * ids (ckpt_capture_output.c); root only traces and reads /proc.
 *
 * How (the process pauses only for a fork):
 *   1. refusals that need no stop (threads for a migration, before the output
 *      is created; set-id, pipes and sockets, writable shared memory, memory a
 *      fork leaves out);
 *   2. the pause: seize and interrupt the process and each of its other
 *      threads (ckpt_capture_threads.c), read what fork does not carry or
 *      what the live process changes (pending signals, registers, blocked
 *      signals, robust list, file offsets, interval and POSIX timers; each other
 *      thread's registers, XSAVE, mask, altstack, rseq), inject
 *      clone(flags 0, no stack): a copy-on-write copy with no exit signal,
 *      invisible to the program's wait(); put the registers back, detach;
 *   3. from the frozen copy, at leisure: memory areas and pages, descriptors,
 *      signal actions, altstack, brk, XSAVE state, rseq; write the image;
 *   4. kill the copy, and (a second short pause) reap it from the process with
 *      an injected wait4(copy, __WCLONE): only the process can.
 * The injected calls are allowed by the discipline's filter (docs/SYSCALLS.md:
 * clone with flags 0 and no stack exists for this). */
#include "ckpt_capture_common.h"
#include "mosix_names.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EXTRA 16

/* The OPTIONS keys (format.OPTION_KEYS); inherit and argv0 are filled in here
 * unless given. */
static const char *const option_keys[] = {
    "inherit", "checkpoint-file", "checkpoint-next", "checkpoint-limit", "checkpoint-interval",
    "argv0",
};

enum action { ACT_NONE, ACT_STOP, ACT_EXIT, ACT_MIGRATE };
#define MAX_DEPUTY_ARGS 32
#define LEFTOVER_END_MS 5000 /* a killed copy ends at once; this bounds a stuck one */

struct options {
    const char *path; /* -o */
    int fd;           /* -f, or -1 */
    enum action action;
    char *extra[MAX_EXTRA];
    int nextra;
    char *deputy[MAX_DEPUTY_ARGS];
    int ndeputy;
    int timings;
    int image_in; /* -i, or -1 */
    pid_t leftover; /* -Z, or 0 */
    int precopy;    /* -P: at most this many pre-copy rounds after the first */
    pid_t pid;
};

/* Everything cleanup needs to put back. */
static struct {
    pid_t pid;
    int procfd, memfd;             /* /proc/PID and its mem */
    struct ck_tracee parent, copy; /* the process, and its disposable copy */
    struct ck_threads threads;     /* its other threads, stopped during the pause */
    struct ck_timers timers;       /* its POSIX timers */
    uint64_t threads_us;           /* of the pause: stopping and reading the other threads */
    int copy_made, copy_reaped;
    int copyfd, copymem;
    int use_output;
    struct ck_output out;
    int outfd;
    struct ck_owner owner;
} R = {.procfd = -1, .memfd = -1, .copyfd = -1, .copymem = -1, .outfd = -1};

/* ------------------------------------------------------------ options */

_Noreturn static void usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn static void usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mosix-ckpt: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (usage: mosix-ckpt (-o PATH | -f FD) [-a none|stop|exit|migrate] "
                    "[-D ARG]... [-O KEY=VALUE]... [-T] [-P N] PID | -o PATH -i FD "
                    "[-O KEY=VALUE]... PID)\n");
    exit(CK_EXIT_USAGE);
}

static int known_key(const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || strchr(kv, '\n'))
        return 0;
    for (size_t i = 0; i < sizeof(option_keys) / sizeof(option_keys[0]); i++)
        if (strlen(option_keys[i]) == (size_t)(eq - kv) &&
            strncmp(kv, option_keys[i], (size_t)(eq - kv)) == 0)
            return 1;
    return 0;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->image_in = -1;
    int c;
    uint64_t v;
    opterr = 0; /* one line of ours instead */
    while ((c = getopt(argc, argv, "+:o:f:a:O:TD:i:Z:P:")) != -1) {
        switch (c) {
        case 'o':
            if (!*optarg)
                usage("empty -o path");
            o->path = optarg;
            break;
        case 'f':
            if (ck_parse_u64(optarg, 10, &v) < 0 || v > 1 << 30)
                usage("-f %s: not a descriptor number", optarg);
            o->fd = (int)v;
            break;
        case 'a':
            if (strcmp(optarg, "none") == 0)
                o->action = ACT_NONE;
            else if (strcmp(optarg, "stop") == 0)
                o->action = ACT_STOP;
            else if (strcmp(optarg, "exit") == 0)
                o->action = ACT_EXIT;
            else if (strcmp(optarg, "migrate") == 0)
                o->action = ACT_MIGRATE;
            else
                usage("-a %s: none, stop, exit or migrate", optarg);
            break;
        case 'D':
            if (o->ndeputy == MAX_DEPUTY_ARGS)
                usage("too many -D");
            o->deputy[o->ndeputy++] = optarg;
            break;
        case 'O':
            if (!known_key(optarg))
                usage("-O %s: not KEY=VALUE with a known key", optarg);
            if (o->nextra == MAX_EXTRA)
                usage("too many -O");
            o->extra[o->nextra++] = optarg;
            break;
        case 'T':
            o->timings = 1;
            break;
        case 'i':
            if (ck_parse_u64(optarg, 10, &v) < 0 || v > 1 << 30)
                usage("-i %s: not a descriptor number", optarg);
            o->image_in = (int)v;
            break;
        case 'Z':
            if (ck_parse_u64(optarg, 10, &v) < 0 || v == 0 || v > 0x7fffffff)
                usage("-Z %s: not a process id", optarg);
            o->leftover = (pid_t)v;
            break;
        case 'P':
            if (ck_parse_u64(optarg, 10, &v) < 0 || v > 64)
                usage("-P %s: not a number of rounds (0 to 64)", optarg);
            o->precopy = (int)v + 1; /* 0: no pre-copy */
            break;
        case ':':
            usage("-%c needs a value", optopt);
        default:
            usage("-%c: unknown option", optopt);
        }
    }
    if (optind != argc - 1)
        usage("one process id expected");
    if (ck_parse_u64(argv[optind], 10, &v) < 0 || v == 0 || v > 0x7fffffff)
        usage("%s: not a process id", argv[optind]);
    o->pid = (pid_t)v;
    if (o->leftover) {
        if (o->path || o->fd >= 0 || o->action != ACT_NONE || o->image_in >= 0 || o->nextra)
            usage("-Z goes alone");
        return;
    }
    if (!o->path == (o->fd < 0))
        usage("exactly one of -o and -f");
    if (o->ndeputy > 0 && o->action != ACT_MIGRATE)
        usage("-D needs -a migrate");
    if (o->precopy && (o->action != ACT_MIGRATE || o->fd < 0))
        usage("-P needs -a migrate and -f");
    if (o->image_in >= 0 && (!o->path || o->action != ACT_NONE || o->timings))
        usage("-i goes with -o only");
}

/* ------------------------------------------------------------ cleanup */

/* Called with the process stopped: is the syscall instruction found before
 * still there?  Not if it executed another program meanwhile (its old
 * /proc/PID/mem then reads nothing: it belongs to the old memory); then find
 * one in the new.  0, or -1 (ck_why). */
static int check_syscall_insn(void)
{
    unsigned char insn[2];
    if (ck_mem_read(R.memfd, R.parent.syscall_at, insn, sizeof(insn)) == 0 && insn[0] == 0x0f &&
        insn[1] == 0x05)
        return 0;
    if (close(R.memfd) < 0) {
        ck_set_why_errno("close");
        return -1;
    }
    R.memfd = openat(R.procfd, "mem", O_RDWR | O_CLOEXEC);
    if (R.memfd < 0) {
        ck_set_why_errno("/proc/%d/mem", R.pid);
        return -1;
    }
    R.parent.syscall_at = ck_find_syscall_insn(R.procfd, R.memfd);
    if (!R.parent.syscall_at) {
        ck_set_why("process %d: no syscall instruction found in its text", R.pid);
        return -1;
    }
    return 0;
}

/* The copy is a zombie child of the process with no exit signal: only the
 * process can reap it, with wait4(copy, __WCLONE).  0 or -1 (ck_why). */
static int reap_pid(pid_t pid, int keep_held);

static int reap_copy(int keep_held)
{
    if (!R.copy_made || R.copy_reaped || R.parent.dead)
        return 0;
    int rc = reap_pid(R.copy.pid, keep_held);
    if (rc == 0)
        R.copy_reaped = 1;
    return rc;
}

/* The copy pid (dead) is a zombie of the process: wait4 injected into it.  0 or -1. */
static int reap_pid(pid_t pid, int keep_held)
{
    if (!R.parent.attached && ck_seize(&R.parent, R.pid) < 0)
        return errno == ESRCH ? 0 : -1; /* it ended: its children went to another parent */
    if (R.parent.stop == CK_RUNNING && ck_interrupt(&R.parent) < 0) {
        int gone = R.parent.dead;
        if (ck_release(&R.parent) < 0 && !gone)
            return -1;
        return gone ? 0 : -1;
    }
    uint64_t args[6] = {(uint64_t)pid, 0, __WCLONE | WNOHANG, 0, 0, 0};
    int64_t ret = 0;
    int rc = check_syscall_insn();
    if (rc == 0)
        rc = ck_inject(&R.parent, SYS_wait4, args, &ret);
    if (rc == 0 && ret != pid && ret != -ECHILD) {
        ck_set_why("wait4 for the copy %d in process %d returned %lld", pid, R.pid,
                   (long long)ret);
        rc = -1;
    }
    if (keep_held && !R.parent.dead)
        return rc;
    if (ck_release(&R.parent) < 0 && !R.parent.dead)
        rc = -1;
    return R.parent.dead ? 0 : rc;
}

/* Pre-copy: the previous round's copy stays alive (stopped) until the next
 * one is made (the pages the process shares with it are the ones it did not
 * write); killed copies wait, zombies of the process, to be reaped at its next
 * pause. */
#define MAX_ZOMBIES 80
static struct {
    struct ck_precopy pc;
    int on;
    struct ck_tracee prev;
    pid_t zombie[MAX_ZOMBIES];
    int nzombies;
    uint64_t pause_us; /* the longest pause of a round */
    uint64_t held_at, image_us, captured_us, go_us, done_us; /* of the final hold (-T) */
} P;

/* The pages written since the last copy (the process stopped, that copy alive). */
static void precopy_scan(void)
{
    pid_t ours[MAX_ZOMBIES + 2];
    int n = 0;
    for (int i = 0; i < P.nzombies; i++)
        ours[n++] = P.zombie[i];
    ours[n++] = P.prev.pid;
    ck_precopy_scan(&P.pc, R.procfd, R.pid, ours, n);
}

static void kill_prev(void)
{
    if (!P.prev.attached)
        return;
    if (ck_kill_copy(&P.prev) < 0)
        ck_fail("the copy %d: %s", P.prev.pid, ck_why);
    if (P.nzombies < MAX_ZOMBIES)
        P.zombie[P.nzombies++] = P.prev.pid;
    memset(&P.prev, 0, sizeof(P.prev));
}

/* The process held (attached and stopped): reap the killed copies. */
static void reap_zombies(void)
{
    for (; P.nzombies > 0; P.nzombies--)
        if (reap_pid(P.zombie[P.nzombies - 1], 1) < 0)
            ck_warn("the copy %d stays a zombie of process %d: %s", P.zombie[P.nzombies - 1],
                    R.pid, ck_why);
}

static void cleanup(void)
{
    char why[sizeof(ck_why)];
    snprintf(why, sizeof(why), "%s", ck_why);
    if (ck_kill_copy(&P.prev) < 0)
        ck_warn("the copy %d: %s", P.prev.pid, ck_why);
    else if (P.prev.pid && P.nzombies < MAX_ZOMBIES)
        P.zombie[P.nzombies++] = P.prev.pid;
    if (ck_kill_copy(&R.copy) < 0)
        ck_warn("the copy %d: %s", R.copy.pid, ck_why);
    (void)ck_threads_release(&R.threads); /* each failure is a warning */
    if (ck_release(&R.parent) < 0 && !R.parent.dead)
        ck_warn("process %d: %s", R.pid, ck_why);
    if (reap_copy(0) < 0)
        ck_warn("the copy %d stays a zombie of process %d: %s", R.copy.pid, R.pid, ck_why);
    for (; P.nzombies > 0; P.nzombies--)
        if (reap_pid(P.zombie[P.nzombies - 1], 0) < 0)
            ck_warn("the copy %d stays a zombie of process %d: %s", P.zombie[P.nzombies - 1],
                    R.pid, ck_why);
    snprintf(ck_why, sizeof(ck_why), "%s", why);
}

static void discard(void)
{
    if (R.use_output)
        ck_output_discard(&R.out);
}

static void refused(const char *reason)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "mosrun: checkpoint of process %d failed: %s\n", R.pid,
                     reason);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = snprintf(line, sizeof(line), "mosrun: checkpoint of process %d failed\n", R.pid);
    /* the reason travels on stderr too: nobody reads the file back to learn it */
    if (ck_write_all(STDERR_FILENO, line, (size_t)n) < 0)
        ck_warn("stderr: %s", ck_why);
    int fd = R.use_output ? R.out.fd : R.outfd;
    if (ck_write_all(fd, line, (size_t)n) < 0) {
        fprintf(stderr, "mosix-ckpt: %s\n", ck_why);
        discard();
        exit(CK_EXIT_FAILED);
    }
    if (R.use_output)
        ck_output_commit(&R.out); /* a failure discards the temporary file */
}

/* ------------------------------------------------------------ setup */

static int open_proc(pid_t pid)
{
    char path[32];
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        ck_fail("no process %d", (int)pid);
    if (fd < 0)
        ck_fail_errno("%s", path);
    return fd;
}

static void open_output(const struct options *o)
{
    if (o->fd >= 0) {
        if (fcntl(o->fd, F_GETFL) < 0)
            ck_fail_errno("-f %d", o->fd);
        R.outfd = o->fd;
        return;
    }
    int cwd = openat(R.procfd, "cwd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        ck_fail_errno("the current directory of process %d", R.pid);
    ck_output_create(&R.out, cwd, o->path, &R.owner);
    R.use_output = 1;
    R.outfd = R.out.fd;
    if (close(cwd) < 0)
        ck_fail_errno("close");
}

/* Refusals that need no stop (the frozen copy is checked again). */
static void precheck(void)
{
    struct ck_maps maps;
    ck_precheck_process(R.procfd);
    ck_precheck_files(R.procfd);
    ck_read_maps(R.procfd, &maps);
    ck_check_maps(&maps);
    ck_check_fork_flags(R.procfd);
    for (int i = 0; i < maps.n; i++)
        free(maps.a[i].name);
    free(maps.a);
}

/* ------------------------------------------------------------ the pause */

static void make_copy(void)
{
    /* EXITKILL while the copy is made, which it inherits: should this program
     * die, the copy dies rather than run on as a second instance */
    const unsigned long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;
    if (ck_setoptions(&R.parent, opts) < 0)
        ck_fail("%s", ck_why);
    uint64_t args[6] = {0, 0, 0, 0, 0, 0}; /* flags 0 (exit signal 0), no stack */
    int64_t ret = 0;
    R.parent.new_child = 0;
    int rc = ck_inject(&R.parent, SYS_clone, args, &ret);
    if (R.parent.new_child) {
        R.copy.pid = R.parent.new_child;
        R.copy.attached = 1; /* auto-attached */
        R.copy_made = 1;
    }
    if (rc < 0)
        ck_fail("%s", ck_why);
    if (ret < 0) {
        errno = (int)-ret;
        ck_fail_errno("clone in process %d", R.pid);
    }
    if (!R.copy_made || ret != R.copy.pid)
        ck_fail("clone in process %d: no copy reported", R.pid);
    if (ck_setoptions(&R.parent, PTRACE_O_TRACESYSGOOD) < 0)
        ck_fail("%s", ck_why);
}

static uint64_t first_pause(struct ck_frozen *fz, uint64_t *created_ns, int keep_held)
{
    if (ck_seize(&R.parent, R.pid) < 0)
        ck_fail("%s", ck_why);
    uint64_t t0 = ck_now_us();
    P.held_at = t0;
    if (ck_interrupt(&R.parent) < 0)
        ck_fail("%s", ck_why);
    if (check_syscall_insn() < 0)
        ck_fail("%s", ck_why);
    uint64_t t1 = ck_now_us();
    ck_threads_stop(&R.threads, R.pid, R.procfd, R.parent.syscall_at);
    ck_threads_read(&R.threads, &R.parent, R.procfd, R.memfd);
    R.threads_us = ck_now_us() - t1;
    ck_vdso_settle(&R.parent, R.procfd, R.memfd);
    ck_freeze_state(&R.parent, R.procfd, R.memfd, fz);
    ck_timers_read(&R.timers, &R.parent, R.procfd, R.memfd);
    *created_ns = ck_realtime_ns();
    if (P.on) /* the pages written since the last round: nothing runs in it until the copy */
        precopy_scan();
    make_copy();
    if (keep_held)
        return ck_now_us() - t0;
    if (ck_threads_release(&R.threads) < 0)
        ck_fail("the threads of process %d could not all be resumed", R.pid);
    if (ck_release(&R.parent) < 0)
        ck_fail("%s", ck_why);
    return ck_now_us() - t0;
}

/* ------------------------------------------------------------ the image */

struct capture {
    struct ck_frozen fz;
    struct ck_copy_state cs;
    struct ck_maps maps;
    struct ck_files files;
    struct mosix_ckpt_process proc;
    char *options;
    size_t options_len;
    char cwd[MOSIX_CKPT_MAX_PATH];
};

static void open_copy(void)
{
    if (ck_adopt(&R.copy, R.copy.pid, R.parent.syscall_at) < 0)
        ck_fail("%s", ck_why);
    R.copyfd = open_proc(R.copy.pid);
    R.copymem = openat(R.copyfd, "mem", O_RDWR | O_CLOEXEC);
    if (R.copymem < 0)
        ck_fail_errno("/proc/%d/mem", R.copy.pid);
}

static void examine_copy(struct capture *c, const struct options *o)
{
    ck_precheck_process(R.copyfd); /* again: it may have executed a set-id program meanwhile */
    ck_read_maps(R.copyfd, &c->maps);
    ck_check_maps(&c->maps);
    ck_collect_files(R.copyfd, &c->fz.fds, &c->files);
    ck_query_copy(&R.copy, R.copyfd, R.copymem, &c->cs);
    ck_open_unreadable(&R.copy, &c->maps);
    ck_threads_find_tid(&R.threads, R.pid, c->fz.regs.fs_base, R.copymem);
    if (R.threads.n && R.threads.xsave_size != c->cs.xsave_size)
        ck_fail("the threads' XSAVE areas differ in size (%u, %u)", R.threads.xsave_size,
                c->cs.xsave_size);
    R.threads.xsave_size = c->cs.xsave_size;
    ck_build_process(&c->proc, R.pid, R.copy.pid, R.procfd, R.copyfd, R.copymem, &c->fz, &c->cs,
                     &c->maps, &R.threads);
    c->options = ck_build_options(R.procfd, o->extra, o->nextra, &c->options_len);
    if (ck_readlink(R.copyfd, "cwd", c->cwd, sizeof(c->cwd)) < 0)
        ck_fail_errno("the current directory of process %d", R.pid);
}

/* ------------------------------------------------------------ pre-copy rounds */

#define PRECOPY_SMALL 2048 /* pages (8 MiB): few enough for the final image */

/* One round's pause: the process stopped, the pages it wrote since the last
 * copy found (scan), the next copy made, the process let go. */
static void precopy_pause(int scan)
{
    if (ck_seize(&R.parent, R.pid) < 0)
        ck_fail("%s", ck_why);
    uint64_t t0 = ck_now_us();
    if (ck_interrupt(&R.parent) < 0)
        ck_fail("%s", ck_why);
    if (check_syscall_insn() < 0)
        ck_fail("%s", ck_why);
    /* every thread held from the scan to the copy: a page another thread first
     * wrote in between would be shared with the new copy, not sent, and never
     * seen written again (the target would keep what an earlier round sent) */
    if (scan)
        ck_threads_stop(&R.threads, R.pid, R.procfd, R.parent.syscall_at);
    reap_zombies();
    if (scan)
        precopy_scan();
    make_copy();
    if (scan) {
        if (ck_threads_release(&R.threads) < 0)
            ck_fail("the threads of process %d could not all be resumed", R.pid);
        R.threads.n = 0; /* released: the next pause stops them again */
    }
    if (ck_release(&R.parent) < 0)
        ck_fail("%s", ck_why);
    uint64_t took = ck_now_us() - t0;
    if (took > P.pause_us)
        P.pause_us = took;
}

/* The copy just made becomes the previous one (alive, stopped) once read. */
static void precopy_keep_copy(void)
{
    if (close(R.copymem) < 0 || close(R.copyfd) < 0)
        ck_fail_errno("close");
    R.copymem = R.copyfd = -1;
    P.prev = R.copy;
    memset(&R.copy, 0, sizeof(R.copy));
    R.copy_made = 0;
}

/* While the process runs: its anonymous memory, then what it wrote meanwhile,
 * round after round, until little is left, the rounds run out or it writes
 * faster than the rounds send (no fewer pages than the round before). */
static void precopy(struct ck_image *im, int max_rounds)
{
    P.on = 1;
    precopy_pause(0);
    kill_prev();
    open_copy();
    struct ck_maps maps;
    ck_read_maps(R.copyfd, &maps);
    ck_check_maps(&maps);
    ck_open_unreadable(&R.copy, &maps);
    ck_precopy_first(&P.pc, im, R.copy.pid, R.copyfd, R.copymem, &maps, R.procfd, R.pid);
    for (int i = 0; i < maps.n; i++)
        free(maps.a[i].name);
    free(maps.a);
    precopy_keep_copy();
    uint64_t last = UINT64_MAX;
    for (int round = 1; round < max_rounds; round++) {
        precopy_pause(1);
        kill_prev();
        open_copy();
        uint64_t dirty = P.pc.last_dirty;
        ck_precopy_send(&P.pc, im, R.copy.pid, R.copyfd, R.copymem);
        precopy_keep_copy();
        if (dirty <= PRECOPY_SMALL || dirty >= last || P.pc.unreliable)
            break;
        last = dirty;
    }
    ck_precopy_final = &P.pc;
}

static void record(struct ck_image *im, unsigned kind, const void *a, size_t alen)
{
    struct iovec part = {.iov_base = (void *)a, .iov_len = alen};
    ck_image_record(im, kind, &part, 1);
}

static void write_image(struct ck_image *im, struct capture *c, uint64_t created_ns)
{
    struct mosix_ckpt_regs regs;
    ck_regs_for_image(&c->fz.regs, &regs);
    ck_vdso_regs(&regs, R.copyfd, R.copymem);
    if (!im->s) /* pre-copy started it */
        ck_image_start(im, R.outfd, R.use_output, (uint32_t)R.pid, created_ns);
    record(im, MOSIX_CKPT_KIND_PROCESS, &c->proc, sizeof(c->proc));
    record(im, MOSIX_CKPT_KIND_OPTIONS, c->options, c->options_len);
    record(im, MOSIX_CKPT_KIND_CWD, c->cwd, strlen(c->cwd));
    ck_write_files(im, R.copy.pid, R.copyfd, &c->files);
    ck_write_private(im, R.copyfd); /* a migrating process's move with it */
    record(im, MOSIX_CKPT_KIND_REGS, &regs, sizeof(regs));
    record(im, MOSIX_CKPT_KIND_XSTATE, c->cs.xstate, c->cs.xsave_size);
    record(im, MOSIX_CKPT_KIND_SIGACTIONS, c->cs.act, sizeof(c->cs.act));
    ck_threads_write(im, &R.threads, R.copyfd, R.copymem);
    ck_timers_write(im, &R.timers);
    ck_write_memory(im, R.copy.pid, R.copyfd, R.copymem, &c->maps);
    ck_image_end(im);
}

static void finish_copy(int keep_held)
{
    if (close(R.copymem) < 0 || close(R.copyfd) < 0)
        ck_fail_errno("close");
    R.copymem = R.copyfd = -1;
    if (ck_kill_copy(&R.copy) < 0)
        ck_fail("the copy %d: %s", R.copy.pid, ck_why);
    if (reap_copy(keep_held) < 0) /* the image is good: a zombie is worth a warning */
        ck_warn("the copy %d stays a zombie of process %d: %s", R.copy.pid, R.pid, ck_why);
}

static void act(enum action a)
{
    int sig = a == ACT_STOP ? SIGSTOP : a == ACT_EXIT ? SIGKILL : 0;
    if (sig && !R.parent.dead && kill(R.pid, sig) < 0 && errno != ESRCH)
        ck_fail_errno("kill %d", R.pid);
}

/* The image is complete: its reader sees the end of the stream, the agent
 * hears it (the copies are disposed of while the target restores it). */
static void announce_captured(void)
{
    P.captured_us = ck_now_us() - P.held_at;
    /* the end of the stream now, whoever else holds the connection (the agent keeps
     * it to read TCP's measure of the link: mosix/home_agent/link_rates.py) */
    if (!R.use_output && shutdown(R.outfd, SHUT_WR) < 0 && errno != ENOTSOCK)
        ck_warn("shutdown -f %d: %s", R.outfd, strerror(errno));
    if (!R.use_output && close(R.outfd) < 0)
        ck_fail_errno("close -f %d", R.outfd);
    R.outfd = -1;
    static const char captured[] = MOSIX_CKPT_LINE_CAPTURED "\n";
    if (ck_write_all(STDOUT_FILENO, captured, sizeof(captured) - 1) < 0)
        ck_fail("stdout: %s", ck_why);
}

/* The migration's end: the agent says whether the image was restored. */
static int hand_over(const struct options *o)
{
    char line[16];
    size_t n = 0;
    while (n < sizeof(line) - 1) {
        ssize_t r = read(STDIN_FILENO, line + n, 1);
        if (r < 0 && errno == EINTR && !ck_interrupted)
            continue;
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    P.go_us = ck_now_us() - P.held_at;
    if (strcmp(line, MOSIX_CKPT_LINE_GO) != 0) {
        if (ck_threads_release(&R.threads) < 0)
            ck_warn("the threads of process %d could not all be resumed", R.pid);
        if (ck_release(&R.parent) < 0 && !R.parent.dead)
            ck_fail("%s", ck_why);
        return CK_EXIT_ABANDONED;
    }
    if (R.parent.dead)
        ck_fail("process %d ended during its migration", R.pid);
    if (o->ndeputy == 0) { /* a remote copy: it runs elsewhere now */
        if (kill(R.pid, SIGKILL) < 0 && errno != ESRCH)
            ck_fail_errno("kill %d", R.pid);
        R.parent.dead = 1;
        return CK_EXIT_OK;
    }
    if (ck_threads_end(&R.threads) < 0)
        ck_fail("the threads of process %d could not be ended: %s", R.pid, ck_why);
    if (ck_handoff_deputy(&R.parent, R.procfd, R.memfd, o->deputy, o->ndeputy) < 0)
        ck_fail("%s", ck_why); /* cleanup lets it continue here */
    if (ck_release(&R.parent) < 0 && !R.parent.dead)
        ck_fail("%s", ck_why);
    return CK_EXIT_OK;
}

/* -i: the image of a process away, from its copy's image and its deputy. */
static int away(const struct options *o)
{
    if (fcntl(o->image_in, F_GETFL) < 0)
        ck_fail_errno("-i %d", o->image_in);
    R.pid = o->pid;
    R.procfd = open_proc(o->pid);
    ck_read_owner(R.procfd, R.pid, &R.owner); /* before anything is created */
    open_output(o);
    struct ck_image im;
    ck_away_image(&im, R.outfd, R.use_output, o->image_in, o->pid, R.procfd, o->extra, o->nextra);
    ck_output_commit(&R.out);
    return CK_EXIT_OK;
}

/* -Z: the copy of a checkpointer that was killed (its copy died with it, the
 * tracer gone) is a zombie of the process with no exit signal: reap it. */
static void leftover_state(pid_t copy, char *state, int *ppid, unsigned long *exit_signal)
{
    char path[64], stat[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)copy);
    if (ck_read_small(AT_FDCWD, path, stat, sizeof(stat)) < 0)
        ck_fail_errno("%s", path);
    const char *rest = strrchr(stat, ')');
    if (rest) { /* state ppid ... exit_signal is field 38, the 36th after the name */
        char *save = NULL;
        int field = 0;
        for (char *tok = strtok_r((char *)rest + 1, " ", &save); tok;
             tok = strtok_r(NULL, " ", &save), field++) {
            if (field == 0)
                *state = tok[0];
            else if (field == 1)
                *ppid = atoi(tok);
            else if (field == 35)
                *exit_signal = strtoul(tok, NULL, 10);
        }
    }
}

static int reap_leftover(const struct options *o)
{
    char state = 0;
    int ppid = 0;
    unsigned long exit_signal = 1;
    leftover_state(o->leftover, &state, &ppid, &exit_signal);
    if (ppid != o->pid || exit_signal != 0)
        ck_fail("process %d is not a leftover copy of process %d", (int)o->leftover, (int)o->pid);
    /* its capturer is gone: it dies (EXITKILL did it, or we do; its pidfd tells
     * when it has), then is reaped */
    if (state != 'Z') {
        int pidfd = (int)syscall(SYS_pidfd_open, o->leftover, 0);
        if (pidfd < 0)
            ck_fail_errno("pidfd_open %d", (int)o->leftover);
        if (kill(o->leftover, SIGKILL) < 0 && errno != ESRCH)
            ck_fail_errno("kill %d", (int)o->leftover);
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int r;
        do
            r = poll(&p, 1, LEFTOVER_END_MS);
        while (r < 0 && errno == EINTR && !ck_interrupted);
        if (r <= 0)
            ck_fail("the leftover copy %d does not end", (int)o->leftover);
        if (close(pidfd) < 0)
            ck_fail_errno("close");
    }
    R.pid = o->pid;
    R.procfd = open_proc(o->pid);
    ck_read_owner(R.procfd, R.pid, &R.owner);
    R.memfd = openat(R.procfd, "mem", O_RDWR | O_CLOEXEC);
    if (R.memfd < 0)
        ck_fail_errno("/proc/%d/mem", R.pid);
    R.parent.syscall_at = ck_find_syscall_insn(R.procfd, R.memfd);
    if (!R.parent.syscall_at)
        ck_fail("process %d: no syscall instruction found in its text", R.pid);
    R.copy.pid = o->leftover;
    R.copy_made = 1;
    if (reap_copy(0) < 0)
        ck_fail("%s", ck_why);
    return CK_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);
    uint64_t t_start = ck_now_us();
    /* for tests and benchmarks: the fallback paths */
    ck_no_direct = getenv("MOSIX_CKPT_NO_DIRECT") != NULL;
    ck_no_pagemap_scan = getenv("MOSIX_CKPT_NO_PAGEMAP_SCAN") != NULL;
    int migrating = o.action == ACT_MIGRATE;
    ck_migrating = migrating;
    /* A checkpoint file (recovered here) refers to unchanged file pages; a move's
     * image, streamed or frozen to a file, stores them.  The environment variable
     * (benchmarks, tests): the previous format, every page stored. */
    ck_reference_files = o.path && !migrating && getenv(MOSIX_STORE_FILE_PAGES_ENV) == NULL;
    const struct ck_hooks hooks = {.cleanup = cleanup, .discard = discard, .refused = refused};
    ck_set_hooks(&hooks);
    ck_catch_signals();
    if (o.image_in >= 0)
        return away(&o);
    if (o.leftover)
        return reap_leftover(&o);
    R.pid = o.pid;
    R.procfd = open_proc(o.pid);
    ck_read_owner(R.procfd, R.pid, &R.owner); /* before anything is created */
    ck_reference_owner = &R.owner;
    R.threads.th = calloc(MOSIX_CKPT_MAX_THREADS - 1, sizeof(*R.threads.th));
    R.threads.sig = calloc(MOSIX_CKPT_MAX_SIGNALS, sizeof(*R.threads.sig));
    if (!R.threads.th || !R.threads.sig)
        ck_fail("out of memory");
    open_output(&o);
    precheck();
    R.memfd = openat(R.procfd, "mem", O_RDWR | O_CLOEXEC);
    if (R.memfd < 0)
        ck_fail_errno("/proc/%d/mem", R.pid);
    R.parent.syscall_at = ck_find_syscall_insn(R.procfd, R.memfd);
    if (!R.parent.syscall_at)
        ck_fail("process %d: no syscall instruction found in its text", R.pid);
    ck_check_interrupted();

    static struct capture c;
    uint64_t created_ns;
    struct ck_image im;
    memset(&im, 0, sizeof(im));
    if (o.precopy) {
        ck_image_start(&im, R.outfd, 0, (uint32_t)R.pid, ck_realtime_ns());
        precopy(&im, o.precopy);
    }
    uint64_t pause_us = first_pause(&c.fz, &created_ns, migrating);
    open_copy();
    examine_copy(&c, &o);
    write_image(&im, &c, created_ns);
    P.image_us = ck_now_us() - P.held_at;
    if (migrating && !R.use_output) {
        /* the copies' ends (their memory unmapped) overlap the restore there */
        if ((P.prev.attached && kill(P.prev.pid, SIGKILL) < 0) || kill(R.copy.pid, SIGKILL) < 0)
            ck_fail_errno("kill of a copy");
        announce_captured();
    }
    kill_prev(); /* the last round's copy */
    reap_zombies();
    finish_copy(migrating);
    if (R.use_output)
        ck_output_commit(&R.out);
    if (migrating && R.outfd >= 0)
        announce_captured();
    int status = migrating ? hand_over(&o) : CK_EXIT_OK;
    P.done_us = ck_now_us() - P.held_at;
    act(o.action);
    if (o.timings) {
        fprintf(stderr,
                "pause_us=%llu total_us=%llu bytes=%llu pages=%llu areas=%llu threads=%d "
                "threads_us=%llu",
                (unsigned long long)pause_us, (unsigned long long)(ck_now_us() - t_start),
                (unsigned long long)im.bytes, (unsigned long long)im.pages,
                (unsigned long long)im.areas, R.threads.n + 1,
                (unsigned long long)R.threads_us);
        if (P.on) /* -P: the rounds, and the final hold's steps */
            fprintf(stderr,
                    " precopy_rounds=%d precopy_pages=%llu precopy_pause_us=%llu "
                    "precopy_unreliable=%d image_us=%llu captured_us=%llu go_us=%llu "
                    "handed_us=%llu",
                    P.pc.rounds + 1, (unsigned long long)im.pre_pages,
                    (unsigned long long)P.pause_us, P.pc.unreliable,
                    (unsigned long long)P.image_us, (unsigned long long)P.captured_us,
                    (unsigned long long)P.go_us, (unsigned long long)P.done_us);
        fputc('\n', stderr);
    }
    return status;
}
