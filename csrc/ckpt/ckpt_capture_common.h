/* ckpt_capture_common.h - declarations shared by the checkpointer's parts.
 *
 *   mosix_ckpt.c             options and the order of the steps
 *   ckpt_capture_util.c      errors, termination signals, /proc reading, timing
 *   ckpt_capture_trace.c     ptrace: seize, stop, run system calls in a tracee, release
 *   ckpt_capture_output.c    the target's identity; the output file, made by an unprivileged keeper
 *   ckpt_capture_image.c     writing to the output descriptor
 *   ckpt_capture_memory.c    memory areas, present pages, AREA and PAGES records
 *   ckpt_capture_files.c     the descriptor table, FILE and FILEDATA records
 *   ckpt_capture_process.c   the PROCESS record, signal actions, the shim's state
 *   ckpt_capture_threads.c   the other threads: stopped, THREAD and SIGNAL records
 *   ckpt_capture_timers.c    POSIX timers: TIMER records
 *
 * The image format is mosix/ckpt/format.py (ckpt_format.h is generated from it). */
#ifndef MOSIX_CKPT_CAPTURE_COMMON_H
#define MOSIX_CKPT_CAPTURE_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>

#include "ckpt_format.h"
#include "mosix_names.h"
#include "read_whole.h"

/* The exit statuses, named once in mosix/native_names.py (CkptExit). */
enum {
    CK_EXIT_OK = MOSIX_CKPT_EXIT_OK,
    CK_EXIT_FAILED = MOSIX_CKPT_EXIT_FAILED,
    CK_EXIT_USAGE = MOSIX_CKPT_EXIT_USAGE,
    CK_EXIT_REFUSED = MOSIX_CKPT_EXIT_REFUSED,
    CK_EXIT_ABANDONED = MOSIX_CKPT_EXIT_ABANDONED,
    CK_EXIT_DENIED = MOSIX_CKPT_EXIT_DENIED,
    CK_EXIT_NOT_YET = MOSIX_CKPT_EXIT_NOT_YET,
};

#define CK_PAGE MOSIX_CKPT_PAGE_SIZE
#define CK_NSIG 64

_Static_assert(sizeof(struct user_regs_struct) == sizeof(struct mosix_ckpt_regs),
               "REGS is struct user_regs_struct");

/* ------------------------------------------------------------------ errors */

/* What the run must undo when it ends early, and how a refusal is reported.
 * Set by main; each is called at most once. */
struct ck_hooks {
    void (*cleanup)(void);               /* the target running as before, the copy gone */
    void (*discard)(void);               /* no temporary file left */
    void (*refused)(const char *reason); /* write the one-line message (after cleanup) */
};
void ck_set_hooks(const struct ck_hooks *hooks);

/* "mosix-ckpt: MESSAGE" on stderr, cleanup, exit 1. */
_Noreturn void ck_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with ": strerror(errno)" appended. */
_Noreturn void ck_fail_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The process cannot be checkpointed: cleanup, the message, exit 3. */
_Noreturn void ck_refuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Not supported yet (a multi-threaded process that would migrate): "mosix-ckpt: MESSAGE",
 * cleanup as for a failure (nothing left under the output's name), exit 6. */
_Noreturn void ck_not_yet(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* More than one thread, for a migration: ck_not_yet (before anything is created). */
/* A one-line warning on stderr (the run goes on). */
void ck_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last low-level failure, for functions that report instead of failing
 * (the ones cleanup uses). */
extern char ck_why[512];
void ck_set_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ck_set_why_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* SIGINT, SIGTERM, SIGHUP set a flag (no SA_RESTART); SIGPIPE is ignored. */
extern volatile sig_atomic_t ck_interrupted;
extern volatile sig_atomic_t ck_terminations; /* termination signals caught so far */
void ck_catch_signals(void);
void ck_check_interrupted(void); /* ck_fail when a termination signal arrived */

/* ------------------------------------------------------------ small tools */

void *ck_alloc(size_t n); /* malloc or fail */
uint64_t ck_now_us(void); /* CLOCK_MONOTONIC */
uint64_t ck_realtime_ns(void);

/* A whole small file (at most cap-1 bytes) relative to dirfd, NUL-terminated:
 * its length, or -1 with errno. */
ssize_t ck_read_small(int dirfd, const char *path, char *buf, size_t cap);
/* readlinkat, NUL-terminated: the length, or -1 with errno (ENAMETOOLONG if cut). */
ssize_t ck_readlink(int dirfd, const char *path, char *buf, size_t cap);
/* The value of "KEY:" in /proc/PID/status text, leading blanks skipped, up to
 * the end of the line (at most cap-1 bytes): 0, or -1 when absent. */
int ck_status_value(const char *status, const char *key, char *out, size_t cap);
/* Parse a decimal (base 10), octal (8) or hex (16) number that must fill the string. */
int ck_parse_u64(const char *s, int base, uint64_t *out);
/* Read/write the tracee's memory through its /proc/PID/mem (no page pinning:
 * reading a copy-on-write page does not unshare it, see ckpt_capture_memory.c). */
int ck_mem_read(int memfd, uint64_t addr, void *buf, size_t len);  /* 0 or -1 */
int ck_mem_write(int memfd, uint64_t addr, const void *buf, size_t len);

/* ------------------------------------------------------------------ ptrace */

enum ck_stop {
    CK_RUNNING,     /* not in a ptrace stop (or not known to be) */
    CK_STOP_EVENT,  /* the interrupt (group-stop) trap, or another event stop */
    CK_STOP_SIGNAL, /* signal-delivery stop */
    CK_STOP_ENTRY,  /* system call entry */
    CK_STOP_EXIT,   /* system call exit */
};

struct ck_tracee {
    pid_t pid;
    int attached;
    int dead;                      /* it exited: nothing left to put back */
    enum ck_stop stop;
    struct user_regs_struct saved; /* at the interrupt stop: put back at release */
    int have_saved;
    int regs_dirty;                /* registers changed since saved */
    uint64_t syscall_at;           /* a syscall instruction (0f 05) in its text */
    uint16_t held[CK_NSIG];        /* signals held back while injecting: how many of each */
    int trap_pending;              /* stopped just after a seccomp trap: the saved registers
                                    * issue the call again, its SIGSYS is still to be dropped */
    pid_t new_child;               /* from PTRACE_EVENT_CLONE */
    pid_t tgid;                    /* a thread besides the main one: its process (held
                                    * signals go back to the thread); 0: the main one */
};

/* PTRACE_SEIZE (TRACESYSGOOD); the tracee keeps running.  0 or -1 (ck_why). */
int ck_seize(struct ck_tracee *t, pid_t pid);
/* PTRACE_INTERRUPT and wait for the trap (signals that come first are
 * delivered as usual); saves the registers (a call a seccomp filter had just
 * trapped: to be issued again, ckpt_capture_trace.c).  0 or -1 (ck_why).
 * A termination signal (SIGTERM, SIGINT, SIGHUP) that comes during the wait
 * ends it: a thread that does not stop (a vfork parent waiting for its child,
 * a disk sleep) holds no capture hostage.  Nothing of the tracee has changed
 * yet: it is left attached to the kernel only (attached 0; ck_why "interrupted
 * by a signal"), and runs on untraced once this process ends.  The other
 * waits for a tracee (injected calls) never end that way. */
int ck_interrupt(struct ck_tracee *t);
/* The first stop of an auto-attached new child; saves its registers. */
int ck_adopt(struct ck_tracee *t, pid_t pid, uint64_t syscall_at);
int ck_setoptions(struct ck_tracee *t, unsigned long options);
/* Run system call nr(args) in the stopped tracee from its syscall_at
 * instruction; *ret is the raw result (-errno on failure).  A call that comes
 * back to be restarted (a signal arrived) is issued again.  0 or -1 (ck_why). */
int ck_inject(struct ck_tracee *t, long nr, const uint64_t args[6], int64_t *ret);
/* Run execve(path, argv, envp) (addresses in the tracee) in the stopped tracee;
 * on success it runs the new program from there on.  0 or -1 (ck_why). */
int ck_inject_exec(struct ck_tracee *t, uint64_t path, uint64_t argv, uint64_t envp, int64_t *ret);
/* Put the saved registers back (a call interrupted at the stop will be
 * restarted), detach, send again the signals held back.  0 or -1 (ck_why);
 * it always tries to detach. */
int ck_release(struct ck_tracee *t);
/* Kill a disposable tracee and reap it as its tracer.  0 or -1 (ck_why). */
int ck_kill_copy(struct ck_tracee *t);
/* A syscall instruction in the process's [vdso] (or another executable area):
 * its address, 0 if none. */
uint64_t ck_find_syscall_insn(int procfd, int memfd);

/* The registers to record: an interrupted call is to be issued again. */
void ck_regs_for_image(const struct user_regs_struct *in, struct mosix_ckpt_regs *out);
/* Execute one instruction of the stopped tracee (signals on the way are held
 * back); its saved registers become the new ones.  0 or -1 (ck_why). */
int ck_step(struct ck_tracee *t);

/* ------------------------------------------------------------ the vDSO (ckpt_capture_vdso.c) */

/* A process stopped inside the vDSO's code is stepped until it returns from
 * it: that code reads this node's clock data ([vvar]), which another node's
 * differs from (its time namespace), and a copy's restorer writes over the
 * first bytes of the clock functions (vdso_time.h).  Not at a function's
 * entry, nor in a patched one (the call is made again from its start). */
void ck_vdso_settle(struct ck_tracee *t, int procfd, int memfd);
/* A resume address inside a patched clock function's entry goes back to its start. */
void ck_vdso_regs(struct mosix_ckpt_regs *r, int procfd, int memfd);
/* mxh64 of the process's [vdso] with the patches undone (0: it has none). */
uint64_t ck_vdso_hash(int procfd, int memfd);

/* ------------------------------------------------------------------ output */

/* Who the target is (/proc/PID/status), read before anything else: its real
 * ids are the only ones the output is made with (ckpt_capture_output.c). */
#define CK_MAX_GROUPS 1024
struct ck_owner {
    int drop;  /* we are root: the keeper takes these ids (else it keeps ours) */
    uid_t uid; /* real ids */
    gid_t gid;
    size_t ngroups;
    gid_t groups[CK_MAX_GROUPS];
};
/* Read the target's identity and refuse (exit CK_EXIT_DENIED, nothing created)
 * a process that runs with set-id privileges or, when we are root and it is
 * another user's, one not under the MOSIX discipline (NoNewPrivs 1 and a
 * seccomp filter: without them it may have been made set-id since). */
void ck_read_owner(int procfd, pid_t pid, struct ck_owner *o);

/* -o PATH.  Every operation on PATH is made by the keeper, a child that has
 * dropped to the owner's real uid, gid and groups (setgroups, setresgid,
 * setresuid) before it touches a path: the image is written to an unnamed
 * file (O_TMPFILE) in PATH's directory, which only appears, synced and 0400,
 * when committed (linked to a temporary name and renamed onto PATH).  A run
 * killed before leaves nothing: the keeper sees the end of its socket. */
struct ck_output {
    int sock;     /* to the keeper; -1 when it is done */
    pid_t keeper; /* 0 when reaped */
    int fd;       /* the file, -1 when closed */
    char *name;   /* PATH, for messages */
};
void ck_output_create(struct ck_output *o, int cwdfd, const char *path,
                      const struct ck_owner *owner);
void ck_output_commit(struct ck_output *o); /* fsync, 0400, link, rename, fsync the directory */
void ck_output_discard(struct ck_output *o); /* the file never appears (no failing) */

/* The image stream (ckpt_capture_stream.c): records built in large chunks that
 * a writer thread writes in order (strictly sequential: file, pipe or socket). */
struct ck_stream;
struct ck_image {
    uint32_t seq;   /* the next record's sequence number */
    uint64_t bytes; /* of the image so far */
    uint64_t pages, areas;
    struct ck_stream *s;
    unsigned pages_kind; /* 0: PAGES; pre-copy rounds: PRE_PAGES */
    int keep_zeros;      /* pages all zero are stored too: they overwrite older ones (pre-copy)
                          * or the file's (a REFERENCE area's pages not stored are the file's) */
    uint64_t pre_pages;  /* PRE_PAGES stored */
};
/* may_direct: the file is ours (-o), O_DIRECT may be tried on it. */
void ck_image_start(struct ck_image *im, int fd, int may_direct, uint32_t pid, uint64_t created_ns);
/* One record: header (with the payload's checksum) and the payload's parts. */
void ck_image_record(struct ck_image *im, unsigned kind, const struct iovec *parts, int nparts);
/* Room to read pages into, in place: *len bytes (a page multiple, at most want). */
unsigned char *ck_image_pages_begin(struct ck_image *im, size_t want, size_t *len);
/* bytes of pages were read there from addr: PAGES records for the runs of
 * pages that are not all zero. */
void ck_image_pages_end(struct ck_image *im, uint64_t addr, size_t bytes);
void ck_image_end(struct ck_image *im); /* END, everything written, fsync when regular */
extern int ck_no_direct;                /* never O_DIRECT (tests, benchmarks) */
extern int ck_migrating; /* a migration: pipes and sockets stay at home with the deputy */
/* Write all of buf (no checksums: the refusal message). 0 or -1 (ck_why). */
int ck_write_all(int fd, const void *buf, size_t len);

/* ------------------------------------------------------------------ files */

#define CK_MAX_FDS MOSIX_CKPT_MAX_FILES

/* The open descriptors of /proc/PID (procfd), sorted; their count. */
int ck_list_fds(int procfd, int *fds);
/* The stopped tracee executes the deputy: argv dargv (dargv[0] its path) and
 * "-x LIST" of the descriptors whose close-on-exec flag was cleared for it,
 * its own initial environment.  0, or -1 (ck_why) with the process as it was. */
struct ck_tracee;
int ck_handoff_deputy(struct ck_tracee *t, int procfd, int memfd, char *const dargv[], int dargc);

/* What /proc/PID/fdinfo and /proc/PID/fd say at the frozen point (the copy
 * shares the file descriptions with the live process, whose offsets move on,
 * and the files, which it goes on writing: a size read later may hold what it
 * wrote after the frozen point). */
struct ck_fdpos {
    int fd;
    uint32_t flags;
    int64_t pos;
    int has_size; /* the file was stat'ed: size, dev, ino */
    int64_t size;
    uint64_t dev, ino;
};
struct ck_fdsnap {
    int n;
    struct ck_fdpos e[CK_MAX_FDS];
};
/* Fill snap from procfd's fdinfo (a process with too many fds is refused). */
void ck_snap_fds(int procfd, struct ck_fdsnap *snap);

struct ck_file {
    struct mosix_ckpt_file rec;
    char path[MOSIX_CKPT_MAX_PATH];
};
struct ck_files {
    int n;
    struct ck_file *f; /* CK_MAX_FDS entries */
};
/* Describe every descriptor of the frozen copy (childfd: /proc/CHILD); refuse pipes
 * and sockets past the standard streams. */
void ck_collect_files(int childfd, const struct ck_fdsnap *snap, struct ck_files *out);
/* A deputy's table (ckpt_away.c): pipes and sockets from this descriptor up are
 * its own and left out (-1: none). */
extern int ck_own_from;
/* A quick look before touching the process: pipes and sockets past fd 2; for a
 * migration, an open file of a private directory (its files move with the
 * process, a descriptor of one would not). */
void ck_precheck_files(int procfd);
/* copy: the copy's pid (its descriptors are read through pidfd_getfd). */
void ck_write_files(struct ck_image *im, pid_t copy, int childfd, const struct ck_files *files);
/* PRIVATE records: the private temporary directories (mosrun -X) of the copy
 * (``copyfd``: its /proc directory) and their files (ckpt_capture_private.c). */
void ck_write_private(struct ck_image *im, int copyfd);
/* The private directories (mosrun -X) of the process (``procfd``: its /proc
 * directory) and their file systems: at most max, returns how many. */
struct ck_private_dir {
    dev_t dev;
    char point[4096];
};
int ck_private_dirs(int procfd, struct ck_private_dir *dirs, int max);

/* ------------------------------------------------------------------ away */

/* ckpt_away.c: the image of a process that runs on another node, written at
 * home from its two halves: the copy's image streamed from there (memory,
 * registers, signal state) and the deputy's part (descriptors and offsets,
 * directory, umask, limits, parent), taken here while the copy is held quiet. */
/* Write to im the image of deputy pid (procfd: /proc/PID) with the copy's
 * image read from infd; extra/nextra: the OPTIONS lines that replace the copy's. */
void ck_away_image(struct ck_image *im, int outfd, int may_direct, int infd, pid_t pid,
                   int procfd, char *const *extra, int nextra);
/* The process's 16 (soft, hard) limits (prlimit, or /proc/PID/limits). */
void ck_fill_rlimits(struct mosix_ckpt_process *p, pid_t pid, int procfd);

/* ------------------------------------------------------------------ memory */

struct ck_area {
    struct mosix_ckpt_area rec;
    char *name;      /* path or [heap]..., " (deleted)" removed */
    int readable;    /* as mapped (before the copy's mprotect) */
    int skip;        /* [vsyscall], the restorer's trampoline: not in the image */
    /* A REFERENCE area (ckpt_capture_memory.c): its MAPFILE's index (-1: none), and the
     * ranges of its pages written since mapped (start, end pairs): the pages stored. */
    int mapfile;
    uint64_t *written;
    size_t nwritten;
};
struct ck_maps {
    int n;
    struct ck_area *a;
};
/* Parse /proc/PID/maps (procfd: /proc/PID). */
void ck_read_maps(int procfd, struct ck_maps *out);
/* Refuse a writable MAP_SHARED area. */
void ck_check_maps(const struct ck_maps *m);
/* Refuse memory that fork does not copy (the copy would lack it). */
void ck_check_fork_flags(int procfd);
/* Make the copy's unreadable areas readable (mprotect injected into it). */
void ck_open_unreadable(struct ck_tracee *copy, const struct ck_maps *m);
/* AREA and PAGES records for every area, in address order (copy: the copy's pid,
 * childfd its /proc directory, memfd its mem). */
void ck_write_memory(struct ck_image *im, pid_t copy, int childfd, int memfd, struct ck_maps *m);
/* Tests can force the /proc/PID/pagemap reading path (no PAGEMAP_SCAN). */
extern int ck_no_pagemap_scan;
/* A checkpoint file for recovery here: unchanged pages of private file mappings
 * are referenced (MAPFILE records), not stored.  0 for a move's image. */
extern int ck_reference_files;
/* Whose recovery reads the files (the restorer runs as the process's user): a file
 * that user cannot read (an execute-only program) is stored, not referenced. */
extern const struct ck_owner *ck_reference_owner;

/* Pages from a copy into the image (PAGES, or PRE_PAGES per im->pages_kind). */
struct ck_pager;
struct ck_pager *ck_pager_open(struct ck_image *im, pid_t copy, int childfd, int memfd);
void ck_pager_span(struct ck_pager *p, uint64_t start, uint64_t end); /* every page */
/* The present ones; sent (or NULL): 1 for each page stored, from the area's start. */
void ck_pager_present(struct ck_pager *p, const struct ck_area *a, uint8_t *sent);
void ck_pager_close(struct ck_pager *p);
/* Anonymous, private, readable and writable: copied ahead by pre-copy rounds. */
int ck_area_precopyable(const struct ck_area *a);

/* ------------------------------------------------------------------ pre-copy */

/* ckpt_precopy.c: live migration's rounds.  The process runs on between them;
 * the pages it wrote since a copy are those it alone maps (copy-on-write
 * broke their sharing with that copy: /proc/PID/pagemap bit 56), read while it
 * is stopped just before the next copy is made. */
struct ck_pre_area {
    uint64_t start, end;
    uint8_t *sent;  /* per page: the target may hold data for it (not only zeros) */
    uint8_t *dirty; /* per page, since the last copy (the last scan): CK_PRE_WRITTEN,
                     * CK_PRE_DROPPED or 0 */
};
enum {
    CK_PRE_WRITTEN = 1, /* present and written, or swapped out: its contents go */
    CK_PRE_DROPPED = 2, /* absent now, sent before: its zeros go (then it is not sent) */
};
struct ck_precopy {
    int n;
    struct ck_pre_area *a;
    int rounds;          /* rounds sent after the first */
    uint64_t last_dirty; /* pages found by the last scan */
    int unreliable;      /* a new child shares its pages: nothing is kept */
    char children[4096]; /* /proc/PID/task/PID/children at the first copy */
};
/* The first round, from the first copy (maps: the copy's): PRE_AREA records,
 * then PRE_PAGES of their present pages. */
void ck_precopy_first(struct ck_precopy *pc, struct ck_image *im, pid_t copy, int copyfd,
                      int copymem, const struct ck_maps *maps, int procfd, pid_t pid);
/* The process stopped, its last copy alive: the pages written since; how many.
 * ours: the copies (live or zombies), not counted among its children. */
uint64_t ck_precopy_scan(struct ck_precopy *pc, int procfd, pid_t pid, const pid_t *ours,
                         int nours);
/* From the copy made after the scan: PRE_PAGES of the pages found. */
void ck_precopy_send(struct ck_precopy *pc, struct ck_image *im, pid_t copy, int copyfd,
                     int copymem);
/* The pre-copied area the final image's area a is (same span), or NULL. */
const struct ck_pre_area *ck_precopy_kept(const struct ck_precopy *pc, const struct ck_area *a);
/* Set for the final image: kept areas get their changed pages only. */
extern const struct ck_precopy *ck_precopy_final;

/* ------------------------------------------------------------------ process */

/* Collected while the target is stopped (the first pause). */
struct ck_frozen {
    struct user_regs_struct regs;
    uint64_t sigmask;
    uint64_t robust_list, robust_len;
    int64_t itimers[12];
    struct ck_fdsnap fds;
};
void ck_freeze_state(struct ck_tracee *t, int procfd, int memfd, struct ck_frozen *fz);

/* Everything the PROCESS, XSTATE and SIGACTIONS records need from the frozen copy. */
/* The kernel's stack_t, as sigaltstack(2) writes it into the copy's memory. */
struct ck_kstack {
    uint64_t sp;
    int32_t flags, pad;
    uint64_t size;
};

struct ck_copy_state {
    struct mosix_ckpt_sigaction act[CK_NSIG];
    uint64_t altstack_sp, altstack_size;
    int32_t altstack_flags;
    uint64_t brk;
    unsigned char xstate[MOSIX_CKPT_MAX_XSAVE];
    uint32_t xsave_size;
    uint64_t rseq_addr;
    uint32_t rseq_len, rseq_flags, rseq_sig;
};
/* Injected calls in the copy (sigactions, altstack, brk), its XSTATE and rseq. */
void ck_query_copy(struct ck_tracee *copy, int copyfd, int memfd, struct ck_copy_state *cs);

/* The stopped thread's sigaltstack (injected into it). */
void ck_read_altstack(struct ck_tracee *t, int procfd, int memfd, uint64_t *sp, uint64_t *size,
                      int32_t *flags);
/* prctl(PR_GET_TID_ADDRESS) injected into the stopped thread: 1 and *addr, or 0
 * when the kernel cannot say. */
int ck_read_clear_tid(struct ck_tracee *t, int procfd, int memfd, uint64_t *addr);
/* timer_gettime(id) injected into the stopped tracee: 0 and out (interval s, ns,
 * value s, ns), or -errno. */
int64_t ck_read_timer(struct ck_tracee *t, int procfd, int memfd, int32_t id, int64_t out[4]);
/* A stopped thread's XSAVE area (PTRACE_GETREGSET): its size. */
uint32_t ck_read_xstate(pid_t tid, unsigned char *xstate);
/* A stopped thread's rseq registration (all 0: none). */
void ck_read_rseq(pid_t tid, uint64_t *addr, uint32_t *len, uint32_t *flags, uint32_t *sig);

/* ------------------------------------------------------------------ threads */

/* ckpt_capture_threads.c: every thread but the main one (whose id is the
 * pid), stopped with it for the pause; their state is read while they are
 * stopped (what fork does not copy: each is its own task). */
struct ck_thread {
    struct ck_tracee t;
    struct mosix_ckpt_thread rec;
    unsigned char *xstate; /* MOSIX_CKPT_MAX_XSAVE bytes */
    int clear_tid_known;   /* rec.clear_tid was read (else it is taken to be tid_addr) */
};
struct ck_threads {
    int n;                 /* threads besides the main one */
    struct ck_thread *th;  /* MOSIX_CKPT_MAX_THREADS - 1 entries */
    int nsig;              /* pending signals */
    struct mosix_ckpt_signal *sig; /* MOSIX_CKPT_MAX_SIGNALS entries */
    uint32_t xsave_size;
    uint32_t tcb_tid_offset; /* 0: not found */
};
/* Seize and interrupt every thread of pid but main (already stopped), again
 * until no new one appears; threads that end meanwhile are left out. */
void ck_threads_stop(struct ck_threads *ts, pid_t pid, int procfd, uint64_t syscall_at);
/* Registers, XSAVE, mask, altstack, robust list, rseq of each stopped thread,
 * and the pending signals (each thread's and the process's; main: the main
 * thread's tracee). */
void ck_threads_read(struct ck_threads *ts, struct ck_tracee *main, int procfd, int memfd);
/* The offset from fs_base at which every thread's control block holds its id
 * (memfd: the frozen copy's memory, main_fs: the main thread's fs_base). */
void ck_threads_find_tid(struct ck_threads *ts, pid_t pid, uint64_t main_fs, int memfd);
/* Resume every thread (registers put back, held signals sent again); 0 or -1. */
int ck_threads_release(struct ck_threads *ts);
/* End every stopped thread (exit, injected), the main one excepted: the
 * process is handed over to its deputy.  0 or -1 (ck_why). */
int ck_threads_end(struct ck_threads *ts);
/* THREAD and SIGNAL records (copyfd/copymem: the frozen copy, for the vDSO). */
void ck_threads_write(struct ck_image *im, struct ck_threads *ts, int copyfd, int copymem);

/* ckpt_capture_timers.c: the process's POSIX timers (/proc/PID/timers), each
 * with its remaining time (timer_gettime injected into the stopped main thread:
 * fork does not copy timers), in ascending id order. */
struct ck_timers {
    int n;
    struct mosix_ckpt_timer t[MOSIX_CKPT_MAX_TIMERS];
};
void ck_timers_read(struct ck_timers *ts, struct ck_tracee *main, int procfd, int memfd);
void ck_timers_write(struct ck_image *im, const struct ck_timers *ts);

/* copy: the copy's pid, copyfd its /proc directory, memfd its /proc/PID/mem. */
void ck_build_process(struct mosix_ckpt_process *p, pid_t pid, pid_t copy, int procfd, int copyfd,
                      int memfd, const struct ck_frozen *fz, const struct ck_copy_state *cs,
                      const struct ck_maps *maps, const struct ck_threads *threads);

/* The OPTIONS text: inherit= and argv0= of the process, then the extra lines. */
char *ck_build_options(int procfd, char *const *extra, int nextra, size_t *len);

/* Refusals that need no stop: set-id. */
void ck_precheck_process(int procfd);
int ck_count_threads(int procfd); /* entries of /proc/PID/task, -1 on error */

#endif
