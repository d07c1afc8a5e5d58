/* mosix_restore.c - the restorer: turn a checkpoint image back into the process.
 *
 * Usage: mosix-restore [-c] [-p PREFIX] [-e ERRFD]
 *                      [-F SOCKFD [-D CHANFD]... [-t] [-P PID] | -H -x FDS] FD
 *
 * Reads the image (mosix/ckpt/format.py, docs/IMAGE.md) from descriptor FD,
 * strictly in order, and becomes the process it describes: same memory,
 * registers, signal state and kernel bookkeeping.  The caller (mosrun -R) has
 * already opened the process's files, set its directory, umask and limits,
 * and exec'ed this program under the discipline's base filter.
 *
 *   -c         check only: read and verify the whole image, change nothing,
 *              exit 0 if it is good (the same code as a real restore)
 *   -p PREFIX  the prefix of the one-line message of a refusal
 *   -e ERRFD   where that message goes (default 2); closed before the process
 *              resumes (mosrun passes its own stderr: the image's fd 2 may be a file)
 *   -F SOCKFD  migration, on the remote node (mosix-remote): the image's files
 *              stay at home, so their close-on-exec flags are not set here; as
 *              its last act the restorer installs the forward filter (the calls
 *              that run at home go to a listener) and sends the listener over
 *              SOCKFD.  The filter lets the restorer's own calls through by
 *              their address (RESTORER_BASE).
 *   -D CHANFD  with -F (repeated, up to FWD_DIRECT_MAX): the direct channels to
 *              the deputy; when the image has the preload shim's handler they go
 *              to FWD_DIRECT_FD, FWD_DIRECT_FD - 1, ... and the filter is the fast
 *              variant (the shim forwards calls itself), else they are closed
 *   -t         with -F: the process takes its time from this node (mosrun -t);
 *              without it the vDSO's clock functions are made system calls,
 *              which the forward filter sends home (restore_vdso.c)
 *   -P PID     with -F: the process's id at home, which the forwarded calls name
 *              it by: the main thread's in the thread id map (restore_tids.c)
 *   -H -x FDS  migration back home (the deputy executes this): the process's
 *              filters are still in force (no shim filter again), and its
 *              close-on-exec descriptors are the list FDS ("3,5"; "-": none),
 *              not the remote image's
 *
 * A refusal is one line "PREFIX: reason" on fd 2 and exit status 125, before
 * anything is torn down whenever the image's first part shows the problem;
 * after that, the same line and exit_group(125): a partly restored process
 * never runs.
 *
 * A static program without libc, linked at RESTORER_BASE (setup.py), which no
 * image area may touch.  It runs on a stack in its own bss, unmaps everything
 * else (keeping [vdso], [vvar], [vvar_vclock], which it moves to the image's
 * addresses), maps the areas, sets the kernel's state, and leaves through a
 * trampoline at TRAMPOLINE that unmaps the restorer and rt_sigreturns into the
 * process on a frame built from the image. */
#include "restore.h"

#include <asm/signal.h>

#define STACK_BYTES (64u << 10)
#define FD_MAX 1048576
#define PID_MAX 4194304 /* the kernel's ceiling for pid_max */

char restore_stack[STACK_BYTES] __attribute__((aligned(16)));
extern char _end[]; /* the linker's end of the bss */

static const char usage_text[] =
    "usage: mosix-restore [-c] [-p PREFIX] [-e ERRFD] [-F SOCKFD [-D CHANFD]... [-t] [-P PID] | "
    "-H -x FDS] FD";

struct options {
    int check_only;
    int fd;
};

/* "3,5,9" into the close-on-exec set; "-" is none. */
static void parse_fd_list(const char *s, struct image *img)
{
    if (s[0] == '-' && !s[1])
        return;
    while (*s) {
        long v = 0;
        const char *start = s;
        for (; *s >= '0' && *s <= '9'; s++)
            if ((v = v * 10 + (*s - '0')) >= MOSIX_CKPT_MAX_FILES)
                refuse(usage_text);
        if (s == start || (*s && *s != ','))
            refuse(usage_text);
        img->cloexec[v / 64] |= 1ull << (v % 64);
        if (*s)
            s++;
    }
}

/* A decimal number up to max, or -1. */
static int parse_number(const char *s, long max)
{
    long v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > max)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v > max ? -1 : (int)v;
}

static int parse_fd(const char *s) { return parse_number(s, FD_MAX); }

static struct options parse_args(int argc, char **argv)
{
    struct options o = {0, -1};
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (a[1] == 'c' && !a[2]) {
            o.check_only = 1;
        } else if (a[1] == 'p' && !a[2] && i + 1 < argc) {
            msg_prefix(argv[++i]);
        } else if (a[1] == 'e' && !a[2] && i + 1 < argc) {
            int fd = parse_fd(argv[++i]);
            if (fd < 0)
                refuse(usage_text);
            msg_fd(fd);
        } else if (a[1] == 'F' && !a[2] && i + 1 < argc) {
            int fd = parse_fd(argv[++i]);
            if (fd < 0)
                refuse(usage_text);
            migration.forward_sock = fd;
        } else if (a[1] == 'D' && !a[2] && i + 1 < argc) {
            int fd = parse_fd(argv[++i]);
            if (fd < 0)
                refuse(usage_text);
            if (fd < 0 || migration.directs >= (int)(sizeof(migration.direct_fds) / sizeof(int)))
                refuse(usage_text);
            migration.direct_fds[migration.directs++] = fd;
        } else if (a[1] == 't' && !a[2]) {
            migration.time_here = 1;
        } else if (a[1] == 'P' && !a[2] && i + 1 < argc) {
            migration.home_pid = parse_number(argv[++i], PID_MAX);
            if (migration.home_pid <= 0)
                refuse(usage_text);
        } else if (a[1] == 'H' && !a[2]) {
            migration.home = 1;
            msg_tell_program();
        } else if (a[1] == 'x' && !a[2] && i + 1 < argc) {
            migration.cloexec_list = argv[++i];
        } else if (a[1] == '-' && !a[2]) {
            i++;
            break;
        } else {
            refuse(usage_text);
        }
    }
    if (i != argc - 1 || (o.fd = parse_fd(argv[i])) < 0)
        refuse(usage_text);
    if ((migration.home && (migration.forward_sock >= 0 || !migration.cloexec_list)) ||
        (!migration.home && migration.cloexec_list) ||
        (migration.directs > 0 && migration.forward_sock < 0) ||
        (migration.time_here && migration.forward_sock < 0) ||
        (migration.home_pid && migration.forward_sock < 0))
        refuse(usage_text);
    return o;
}

/* No signal may interrupt the restore: the caller's handlers are gone, the
 * image's are not in force yet.  rt_sigreturn sets the image's mask. */
static void block_signals(void)
{
    uint64_t all = ~0ull;
    long rc = mosix_raw4(__NR_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
    if (rc < 0) {
        msg_begin();
        msg_str("cannot block signals");
        msg_err(rc);
        msg_refuse();
    }
}

static struct image img;
struct migration migration = {.forward_sock = -1};

__attribute__((noreturn, used)) void restore_main(long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    if ((uint64_t)_end > SCRATCH_BASE)
        refuse("the restorer is too large for its range");
    block_signals();
    struct options o = parse_args(argc, argv); /* copies the prefix: argv goes away */
    struct reader r = {.fd = o.fd, .apply = !o.check_only};

    image_read_header(&r);
    struct specials cur;
    mem_find_specials(&cur);
    int precopied = image_read_precopy(&r, &cur); /* the address space is torn down then */
    image_read_state(&r, &img);
    if (migration.home) { /* the descriptors are the deputy's, not the remote image's */
        __builtin_memset(img.cloexec, 0, sizeof(img.cloexec));
        parse_fd_list(migration.cloexec_list, &img);
    } else if (migration.forward_sock >= 0) {
        __builtin_memset(img.cloexec, 0, sizeof(img.cloexec));
    }
    cpu_check(&img);
    mem_check_specials(&img, &cur);
    if (r.apply)
        vdso_clocks_prepare(&img, &cur);
    state_set_mm(&img);
    if (r.apply) {
        state_set_personality(&img);
        /* Point of no return: from here a refusal ends the process. */
        if (!precopied)
            mem_teardown(&cur);
        mem_move_specials(&img, &cur);
        vdso_clocks_patch(&img);
    }
    image_read_memory(&r, &img);
    if (!r.apply)
        sys_exit(0);
    state_apply(&img);
    state_resume(&img, r.fd);
}

/* The kernel starts us with argc at (%rsp).  Move to our own stack at once:
 * the kernel's goes away with everything else. */
__attribute__((naked, noreturn)) void _start(void)
{
    __asm__ volatile("mov %%rsp, %%rdi\n\t"
                     "movabs $restore_stack + %c0, %%rsp\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "movabs $restore_main, %%rax\n\t"
                     "call *%%rax\n\t"
                     "ud2"
                     :
                     : "i"(STACK_BYTES));
}
