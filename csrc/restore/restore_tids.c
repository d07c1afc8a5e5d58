/* restore_tids.c - the program's thread ids after a recovery or a move.
 *
 * glibc caches each thread's id in its control block (struct pthread's tid),
 * and the mutexes a thread holds record it as their owner (recursive and
 * error-checking ones in __owner, robust ones in their lock word too).  A
 * recovered or moved process gets new ids from the kernel, so the restorer keeps every
 * thread's cached id at the image's value (the main thread's: restore_state.c;
 * the others': no CLONE_PARENT_SETTID, restore_threads.c) and translates where
 * the kernel takes an id from the program:
 *
 *   - the map (struct mosix_tid_map at MOSIX_TID_MAP_ADDR, mosix_shim.h): for
 *     each thread of the image, the id the program knows and the kernel's now;
 *   - a filter, stacked on the shim's, that traps (SECCOMP_RET_TRAP |
 *     MOSIX_TID_TRAP_MAGIC) calls made from libc's text (glibc's pthread_kill,
 *     pthread_setaffinity_np..., and syscall(2)) that name one of the image's
 *     ids (mosix_tid_calls: tgkill, tkill, rt_tgsigqueueinfo, sched_*...), and
 *     gettid, rt_sigprocmask and timer_create (mosix_tid_always); the shim's
 *     handler (csrc/shim/shim_tids.c) makes them with the kernel's ids.
 *
 * On every restore of a program with the shim's handler: a recovery (-R), a
 * move's target (-F: the forward filter, stacked later, wins over this one
 * for calls it traps for home) and a home-coming (-H: the deputy's filters
 * are in force; each home-coming stacks one more of these, and past the
 * kernel's limit on stacked instructions nothing is translated any more);
 * on a move's end only when there is something to translate (other threads,
 * or a main thread the program knows by another id than its home pid), so a
 * single-threaded process moves without the traps.
 * The ids the program knows are those its control blocks hold, so they stay
 * the same across any number of moves and recoveries.  Entry 0 is the main
 * thread: its kernel id is the process's id, away its home pid (-P: the
 * forwarded calls name it so).  A static program has no handler: its threads
 * get the kernel's ids, as before.  The filter covers libc's text only when
 * it lies within one 4 GiB block (always so for a shared libc); otherwise
 * nothing is translated. */
#include "restore.h"

#include <linux/audit.h>
#include <asm/errno.h>
#include <linux/filter.h>

#include "mosix_shim.h"
#include "seccomp_table.h"

#define PROT_R 1
#define PROT_RW 3
#define MAP_PRIVATE_ANON 0x22
#define MAP_FIXED_NOREPLACE 0x100000
#define TID_FILTER_MAX (64 + 4 * LEN(mosix_tid_calls) + 2 * MOSIX_TID_MAP_MAX)

_Static_assert(sizeof(struct mosix_tid_map) <= MOSIX_TID_MAP_PAGES * PAGE, "tid map pages");
_Static_assert(2 * PAGE + MOSIX_CKPT_MAX_THREADS * (2 * PAGE + MOSIX_CKPT_MAX_XSAVE) <=
                   MOSIX_TID_MAP_ADDR - MOSIX_CKPT_TRAMPOLINE,
               "the tid map above the trampoline's pages");

static int translating; /* 1: the map and the filter are made (tids_prepare) */

static void check(long rc, const char *what)
{
    if (rc < 0)
        state_failed(what, rc);
}

int tids_translated(void) { return translating; }

/* The id the program knows a thread by: its control block's, else the image's. */
static int32_t program_tid(uint64_t tid_addr, uint32_t image_tid)
{
    if (tid_addr) {
        int32_t cached = *(volatile const int32_t *)tid_addr;
        if (cached > 0)
            return cached;
    }
    return (int32_t)image_tid;
}

/* The main thread's id for the kernel: the process's, away its home pid (-P). */
static long main_kernel_tid(void)
{
    long pid = migration.home_pid ? migration.home_pid : mosix_raw0(__NR_getpid);
    check(pid, "cannot get the process id");
    return pid;
}

static struct mosix_tid_map *map_pages(void)
{
    long rc = mosix_raw6(__NR_mmap, MOSIX_TID_MAP_ADDR, MOSIX_TID_MAP_PAGES * PAGE, PROT_RW,
                         MAP_PRIVATE_ANON | MAP_FIXED_NOREPLACE, -1, 0);
    if (rc < 0 || (uint64_t)rc != MOSIX_TID_MAP_ADDR)
        state_failed("cannot map the thread id map", rc < 0 ? rc : -EEXIST);
    return (struct mosix_tid_map *)MOSIX_TID_MAP_ADDR;
}

static struct sock_filter *emit(struct sock_filter *p, uint16_t code, uint8_t jt, uint8_t jf,
                                uint32_t k)
{
    *p = (struct sock_filter){code, jt, jf, k};
    return p + 1;
}

#define LD(p, off) emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, off)
#define RET(p, k) emit(p, BPF_RET | BPF_K, 0, 0, k)
#define SKIP_UNLESS_EQ(p, k) emit(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, k) /* ==: next, else skip 1 */
#define ARG_LO(i) (16u + 8u * (i))
#define TRAP (SECCOMP_RET_TRAP | MOSIX_TID_TRAP_MAGIC)

/* 0, or the kernel's error: -ENOMEM past its limit on stacked instructions. */
static long install_filter(const struct mosix_tid_map *m, uint64_t lo, uint64_t hi)
{
    static struct sock_filter prog[TID_FILTER_MAX];
    struct sock_filter *p = prog;
    p = LD(p, 4); /* arch */
    p = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
    p = RET(p, SECCOMP_RET_ALLOW);
    p = LD(p, 12); /* instruction pointer, high word */
    p = emit(p, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, (uint32_t)(lo >> 32));
    p = RET(p, SECCOMP_RET_ALLOW);
    p = LD(p, 8); /* low word */
    p = emit(p, BPF_JMP | BPF_JGE | BPF_K, 1, 0, (uint32_t)lo);
    p = RET(p, SECCOMP_RET_ALLOW);
    p = emit(p, BPF_JMP | BPF_JGE | BPF_K, 0, 1, (uint32_t)hi);
    p = RET(p, SECCOMP_RET_ALLOW);
    p = LD(p, 0); /* nr */
    for (size_t i = 0; i < LEN(mosix_tid_always); i++) {
        p = SKIP_UNLESS_EQ(p, mosix_tid_always[i]);
        p = RET(p, TRAP);
    }
    struct sock_filter *jumps[LEN(mosix_tid_calls)];
    for (size_t i = 0; i < LEN(mosix_tid_calls); i++) {
        p = SKIP_UNLESS_EQ(p, mosix_tid_calls[i].nr);
        jumps[i] = p;
        p = emit(p, BPF_JMP | BPF_JA, 0, 0, 0); /* to its block, below */
    }
    p = RET(p, SECCOMP_RET_ALLOW);
    struct sock_filter *to_common[LEN(mosix_tid_calls)];
    for (size_t i = 0; i < LEN(mosix_tid_calls); i++) {
        const struct mosix_tid_call *c = &mosix_tid_calls[i];
        jumps[i]->k = (uint32_t)(p - jumps[i] - 1);
        if (c->tgid != MOSIX_TID_NONE) { /* the image's process id there */
            p = LD(p, ARG_LO(c->tgid));
            p = SKIP_UNLESS_EQ(p, (uint32_t)m->program[0]);
            p = RET(p, TRAP);
        }
        p = LD(p, ARG_LO(c->tid));
        to_common[i] = p;
        p = emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
    }
    for (size_t i = 0; i < LEN(mosix_tid_calls); i++)
        to_common[i]->k = (uint32_t)(p - to_common[i] - 1);
    for (uint32_t i = 0; i < m->n; i++) { /* the argument is one of the image's ids */
        p = SKIP_UNLESS_EQ(p, (uint32_t)m->program[i]);
        p = RET(p, TRAP);
    }
    p = RET(p, SECCOMP_RET_ALLOW);
    struct sock_fprog fprog = {.len = (unsigned short)(p - prog), .filter = prog};
    return mosix_raw3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                      &fprog);
}

void tids_prepare(const struct image *img)
{
    const struct mosix_ckpt_process *p = &img->proc;
    if (p->shim_kind == MOSIX_CKPT_SHIM_NONE)
        return;
    uint64_t lo = p->shim_lo, hi = p->shim_hi;
    if ((lo >> 32) != ((hi - 1) >> 32))
        return;
    if (img->nthreads == 0 && (migration.forward_sock >= 0 || migration.home) &&
        program_tid(p->tid_addr, p->pid) == main_kernel_tid())
        return; /* moved, one thread known by its home pid: nothing to translate */
    struct mosix_tid_map *m = map_pages();
    m->program[0] = program_tid(p->tid_addr, p->pid);
    for (uint32_t i = 0; i < img->nthreads; i++)
        m->program[i + 1] = program_tid(img->threads[i].tid_addr, img->threads[i].tid);
    m->n = img->nthreads + 1;
    long rc = install_filter(m, lo, hi);
    if (rc == -ENOMEM) { /* too many filters stacked (many home-comings): as before */
        check(mosix_raw2(__NR_munmap, MOSIX_TID_MAP_ADDR, MOSIX_TID_MAP_PAGES * PAGE),
              "cannot unmap the thread id map");
        return;
    }
    check(rc, "cannot install the thread id filter");
    translating = 1;
}

void tids_note_kernel(const struct image *img)
{
    if (!translating)
        return;
    struct mosix_tid_map *m = (struct mosix_tid_map *)MOSIX_TID_MAP_ADDR;
    long pid = main_kernel_tid();
    m->kernel[0] = (int32_t)pid;
    for (uint32_t i = 0; i < img->nthreads; i++) {
        long tid = threads_new_tid(img, img->threads[i].tid);
        check(tid, "cannot find a thread's new id");
        m->kernel[i + 1] = (int32_t)tid;
    }
    m->magic = MOSIX_TID_MAP_MAGIC;
    check(mosix_raw3(__NR_mprotect, MOSIX_TID_MAP_ADDR, MOSIX_TID_MAP_PAGES * PAGE, PROT_R),
          "cannot protect the thread id map");
}
