/* mosix_shim.h - declarations shared by the C parts of the MOSIX discipline.
 *
 * The policy itself is data: csrc/generated/seccomp_table.h, generated from
 * mosix/discipline/policy.py.  seccomp_filter.c turns it into filters,
 * classifies calls and words the messages; mosix_exec.c (launcher),
 * mosix_guard.c (user-notification guard) and preload_shim.c (SIGSYS
 * handler inside dynamically linked programs) use it. */
#ifndef MOSIX_SHIM_H
#define MOSIX_SHIM_H

/* MOSIX_START_GATE_ENV: mosrun's start gate for a program placed on another
 * node (preload_shim.c, mosix/launch.py, the agent's placement). */
#include "mosix_names.h"
/* MOSIX_CKPT_TRAMPOLINE: where the thread id map lives (below) */
#include "ckpt_format.h"

/* MOSIX_GUARD_ENV (mosix_names.h): the tag of a guard's tree, "PID:TICKS" (the
 * guard's pid and start time), put in the program's environment when the node
 * agent watches the guard: the agent kills the tree's -u processes if the guard
 * dies (mosix/home_agent/guard_watch.py). */
#define MOSIX_GUARD_TAG_MAX 48

#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* Unsupported-call modes, in the order of the probe's errno (MODES in policy.py). */
enum mosix_mode { MOSIX_MODE_KILL = 0, MOSIX_MODE_ENOSYS = 1, MOSIX_MODE_WARN = 2 };

enum mosix_filter_kind {
    MOSIX_FILTER_BASE,        /* launcher: kernel answers and user notification */
    MOSIX_FILTER_SHIM_NOTIFY, /* shim under -u/-w: unsupported calls go on to the guard */
    MOSIX_FILTER_SHIM_ENOSYS, /* shim under -e: unsupported calls fail with ENOSYS here */
    MOSIX_FILTER_BASE_PRIVATE, /* the base filter behind the check of mosrun -X's calls */
};

#define MOSIX_FILTER_MAX 512 /* instructions; checked against the generated programs */

/* Fill ``out`` with a filter of ``kind``: ``mode`` for the base filter's probe
 * answer, [libc_lo, libc_hi) the text the shim's traps apply to.  Returns the
 * number of instructions. */
size_t mosix_filter_build(enum mosix_filter_kind kind, enum mosix_mode mode, uint64_t libc_lo,
                          uint64_t libc_hi, struct sock_filter out[MOSIX_FILTER_MAX]);

/* The table's outcome for a call (MOSIX_OUTCOME_* | argument index << 8).
 * No libc: safe in a signal handler. */
unsigned mosix_classify(const struct seccomp_data *sd);
#define MOSIX_OUTCOME(c) ((c) & 0xffu)
#define MOSIX_OUTCOME_ARG(c) (((c) >> 8) & 0x7u)

/* mosrun -X: how call ``nr`` is checked for the private directories (the
 * table's struct mosix_private_check), NULL when it is not.  No libc. */
struct mosix_private_check;
const struct mosix_private_check *mosix_private_check_of(long nr);

/* The name of system call ``nr`` ("?" when unknown). */
const char *mosix_syscall_name(long nr);

/* The mode a process asked for: the last -e/-u/-w word of its MOSIX_INHERIT,
 * found in ``environ`` (NUL-separated NAME=VALUE entries, ``len`` bytes), or
 * ``dflt`` (the outermost mosrun's mode).  No libc. */
enum mosix_mode mosix_mode_of(const char *environ, size_t len, enum mosix_mode dflt);
/* The same for the value of MOSIX_INHERIT alone (space-separated words). */
enum mosix_mode mosix_mode_of_words(const char *words, size_t len, enum mosix_mode dflt);
/* The same for process pid, from /proc/PID/environ (process_mode.c; uses libc):
 * dflt when it cannot be read. */
enum mosix_mode mosix_mode_of_process(int pid, enum mosix_mode dflt);
/* Up to cap bytes of /proc/PID/NAME into out (process_mode.c; uses libc): how many,
 * or -1 when it cannot be opened. */
long mosix_read_proc(int pid, const char *name, char *out, size_t cap);

/* Messages (no libc).  Return the length written to buf (at most cap-1, NUL-terminated). */
enum mosix_message { MOSIX_MSG_KILLED, MOSIX_MSG_ENOSYS };
#define MOSIX_MESSAGE_MAX 256
size_t mosix_message(char *buf, size_t cap, enum mosix_message kind, const char *comm, long pid,
                     long nr);

/* The shim's state, in the shim's data, found by the checkpointer (mosix_ckpt.c)
 * by scanning the shim's writable mapping for the magic: it records it in the
 * image, and the restorer installs the same filter again. */
#define MOSIX_SHIM_STATE_MAGIC "MOSIX-SHIM-STATE" /* 16 bytes, no NUL kept */
#define MOSIX_SHIM_STATE_VERSION 1
struct mosix_shim_state {
    char magic[16];
    uint32_t version;
    uint32_t active; /* 1: handler installed and the filter below is in force */
    uint32_t kind;   /* enum mosix_filter_kind of the shim's filter (0 if none) */
    uint32_t mode;   /* enum mosix_mode */
    uint64_t libc_lo, libc_hi;
};

/* Thread ids after a recovery (mosix/discipline/tid_calls.py): the restorer
 * (restore_tids.c) keeps each thread's id in its control block at the image's
 * value and writes here which kernel thread each of those ids is now; the
 * shim's handler (shim_tids.c) reads it for the calls its filter traps
 * (SECCOMP_RET_TRAP | MOSIX_TID_TRAP_MAGIC).  Two pages at the top of the
 * trampoline's range: the recovered process keeps them, a later checkpoint
 * skips them with the trampoline.  Entry 0 is the main thread. */
#define MOSIX_TID_MAP_MAGIC 0x50414d444954584dull /* "MXTIDMAP" */
#define MOSIX_TID_MAP_MAX MOSIX_CKPT_MAX_THREADS
struct mosix_tid_map {
    uint64_t magic;
    uint32_t n; /* entries */
    uint32_t pad;
    int32_t program[MOSIX_TID_MAP_MAX]; /* the ids the program knows (the image's) */
    int32_t kernel[MOSIX_TID_MAP_MAX];  /* the same threads' ids now */
};
#define MOSIX_TID_MAP_PAGES 2
#define MOSIX_TID_MAP_ADDR                                                                         \
    (MOSIX_CKPT_TRAMPOLINE + MOSIX_CKPT_TRAMPOLINE_SPAN - MOSIX_TID_MAP_PAGES * 4096ull)

/* The guard: takes the listener from ``sock``, announces itself to the node
 * agent (which then watches it: guard_agent_hello), acknowledges ("k", then the
 * tree's tag when the agent watches), answers until the filter has no more
 * users.  ``root`` is the program's pid; ``argv`` is the launcher's (blanked,
 * with its environment, so the guard does not pass for a MOSIX process); ``dirs``
 * the tree's private directories (mosrun -X), whose names it checks.  Never
 * returns. */
struct private_dirs;
void mosix_guard_run(int sock, enum mosix_mode mode, int root, char **argv,
                     const struct private_dirs *dirs) __attribute__((noreturn));

#endif
