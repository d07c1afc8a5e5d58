/* restore_threads.c - the threads besides the main one, and pending signals.
 *
 * Each thread is made with a raw clone carrying the flags glibc's
 * pthread_create uses: its control block keeps the image's id when thread ids
 * are translated (restore_tids.c), else the kernel writes its new id there
 * (CLONE_PARENT_SETTID at fs_base + tcb_tid_offset: struct pthread's tid);
 * the kernel clears its clear-child-tid word when the thread ends
 * (CLONE_CHILD_CLEARTID, what pthread_join waits on), CLONE_SETTLS gives it
 * its fs_base.  It starts on a
 * small stack in the restorer's range with every signal blocked (the main
 * thread's mask, inherited), and the seccomp filters the main thread has
 * (inherited).  It sets what only a thread can set for itself (robust list,
 * rseq, GS base), queues its own pending signals (the kernel lets a thread
 * queue a kill-like siginfo only to itself), then waits at the barrier in the
 * trampoline's code: nothing of the restorer's is used from then on, so the
 * main thread may unmap it.  Registers, XSAVE state, the blocked mask and the
 * alternate stack come with rt_sigreturn from its frame. */
#include "restore.h"

#include <asm/errno.h>
#include <asm/prctl.h>
#include <linux/futex.h>
#include <linux/sched.h>

#define THREAD_STACK (8u << 10)
#define THREAD_STACKS (SCRATCH_BASE - (uint64_t)(MOSIX_CKPT_MAX_THREADS - 1) * THREAD_STACK)
#define PROT_RW 3
#define MAP_PRIVATE_ANON 0x22
#define MAP_FIXED_NOREPLACE 0x100000

#define THREAD_FLAGS                                                                         \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |        \
     CLONE_SETTLS)

extern char _end[];

static long new_tids[MOSIX_CKPT_MAX_THREADS - 1]; /* by index into img->threads */

/* What a new thread needs, on its own stack's top. */
struct start {
    const struct image *img;
    uint32_t index; /* into img->threads */
    struct barrier *barrier;
    uint64_t frame; /* its ucontext */
    uint64_t waiter;
};

/* The waiter, copied into the trampoline: rbx = &barrier->go, r12 = the
 * thread's ucontext, r13 = &barrier->left.  Waits until go, counts itself
 * out of left (waking the main thread), then rt_sigreturn.  No stack is used. */
__asm__(".pushsection .text\n"
        ".globl mosix_thread_waiter\n"
        ".globl mosix_thread_waiter_end\n"
        "mosix_thread_waiter:\n"
        "1: movl (%rbx), %eax\n"
        "   testl %eax, %eax\n"
        "   jnz 2f\n"
        "   movq %rbx, %rdi\n"
        "   movl $0x80, %esi\n" /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */
        "   xorl %edx, %edx\n"
        "   xorl %r10d, %r10d\n"
        "   movl $202, %eax\n"  /* __NR_futex */
        "   syscall\n"
        "   jmp 1b\n"
        "2: lock decl (%r13)\n"
        "   movq %r13, %rdi\n"
        "   movl $0x81, %esi\n" /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */
        "   movl $1, %edx\n"
        "   movl $202, %eax\n"
        "   syscall\n"
        "   movq %r12, %rsp\n"
        "   movl $15, %eax\n" /* __NR_rt_sigreturn */
        "   syscall\n"
        "   ud2\n"
        "mosix_thread_waiter_end:\n"
        ".popsection\n");

static void check_thread(long rc, const char *what)
{
    if (rc < 0)
        state_failed(what, rc);
}

static void futex_wake(uint32_t *word)
{
    (void)mosix_raw6(__NR_futex, (long)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 0x7fffffff, 0, 0,
                     0);
}

/* Until *word == want (it only moves towards it). */
static void futex_wait_for(uint32_t *word, uint32_t want)
{
    for (;;) {
        uint32_t now = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (now == want)
            return;
        long rc = mosix_raw6(__NR_futex, (long)word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, now, 0, 0,
                             0);
        if (rc < 0 && rc != -EAGAIN && rc != -EINTR)
            state_failed("cannot wait for the threads", rc);
    }
}

static void queue_signals(const struct image *img, uint32_t old_tid, long tgid, long tid)
{
    for (uint32_t i = 0; i < img->nsignals; i++) {
        const struct mosix_ckpt_signal *s = &img->signals[i];
        if (s->tid != old_tid)
            continue;
        int32_t signo;
        __builtin_memcpy(&signo, s->info, sizeof(signo));
        long rc = old_tid == 0
                      ? mosix_raw3(__NR_rt_sigqueueinfo, tgid, signo, s->info)
                      : mosix_raw4(__NR_rt_tgsigqueueinfo, tgid, tid, signo, s->info);
        if (rc < 0)
            state_failed("cannot queue a pending signal again", rc);
    }
}

/* A new thread's first C code (on its start stack). */
__attribute__((noreturn, used)) void mosix_thread_main(const struct start *st)
{
    const struct mosix_ckpt_thread *t = &st->img->threads[st->index];
    if (t->robust_list)
        check_thread(mosix_raw2(__NR_set_robust_list, t->robust_list, t->robust_len),
                     "cannot set a thread's robust futex list");
    if (t->rseq_len)
        check_thread(mosix_raw4(__NR_rseq, t->rseq_addr, t->rseq_len, 0, t->rseq_sig),
                     "cannot register a thread's rseq");
    struct mosix_ckpt_regs regs;
    __builtin_memcpy(&regs, t->regs, sizeof(regs));
    if (regs.gs_base)
        check_thread(mosix_raw2(__NR_arch_prctl, ARCH_SET_GS, regs.gs_base),
                     "cannot set a thread's GS base");
    long tgid = mosix_raw0(__NR_getpid), tid = mosix_raw0(__NR_gettid);
    queue_signals(st->img, t->tid, tgid, tid);
    struct barrier *b = st->barrier;
    __atomic_add_fetch(&b->ready, 1, __ATOMIC_RELEASE);
    futex_wake(&b->ready);
    register uint64_t go __asm__("rbx") = (uint64_t)&b->go;
    register uint64_t frame __asm__("r12") = st->frame;
    register uint64_t left __asm__("r13") = (uint64_t)&b->left;
    __asm__ volatile("jmp *%3" : : "r"(go), "r"(frame), "r"(left), "r"(st->waiter) : "memory");
    __builtin_unreachable();
}

/* clone(flags, stack, ptid, ctid, tls): the parent gets the new tid; the new
 * thread pops its struct start's address and runs mosix_thread_main. */
long mosix_thread_clone(long flags, uint64_t stack, uint64_t ptid, uint64_t ctid, uint64_t tls);
__asm__(".pushsection .text\n"
        ".globl mosix_thread_clone\n"
        "mosix_thread_clone:\n"
        "   movq %rcx, %r10\n"
        "   movl $56, %eax\n" /* __NR_clone */
        "   syscall\n"
        "   testq %rax, %rax\n"
        "   jnz 1f\n"
        "   xorl %ebp, %ebp\n"
        "   movq (%rsp), %rdi\n"
        "   movabs $mosix_thread_main, %rax\n"
        "   call *%rax\n"
        "   ud2\n"
        "1: ret\n"
        ".popsection\n");

void threads_create(const struct image *img, struct barrier *b, const uint64_t *frames,
                    uint64_t waiter)
{
    uint32_t n = img->nthreads;
    if (n == 0)
        return;
    if ((uint64_t)_end > THREAD_STACKS)
        refuse("the restorer is too large for its threads' stacks");
    long rc = mosix_raw6(__NR_mmap, THREAD_STACKS, (uint64_t)n * THREAD_STACK, PROT_RW,
                         MAP_PRIVATE_ANON | MAP_FIXED_NOREPLACE, -1, 0);
    if (rc < 0 || (uint64_t)rc != THREAD_STACKS)
        state_failed("cannot map the threads' stacks", rc < 0 ? rc : -EEXIST);
    for (uint32_t i = 0; i < n; i++) {
        const struct mosix_ckpt_thread *t = &img->threads[i];
        uint64_t top = THREAD_STACKS + (uint64_t)(i + 1) * THREAD_STACK;
        struct start *st = (struct start *)(top - 64);
        *st = (struct start){img, i, b, frames[i], waiter};
        uint64_t sp = top - 128; /* 16-aligned; the new thread finds st at (sp) */
        *(uint64_t *)sp = (uint64_t)st;
        struct mosix_ckpt_regs regs;
        __builtin_memcpy(&regs, t->regs, sizeof(regs));
        /* the image's id stays in its control block when it is translated */
        long settid = t->tid_addr && !tids_translated() ? CLONE_PARENT_SETTID : 0;
        long flags = THREAD_FLAGS | settid | (t->clear_tid ? CLONE_CHILD_CLEARTID : 0);
        long tid = mosix_thread_clone(flags, sp, t->tid_addr, t->clear_tid, regs.fs_base);
        if (tid < 0)
            state_failed("cannot create a thread", tid);
        new_tids[i] = tid;
    }
    futex_wait_for(&b->ready, n);
}

void threads_queue_main_signals(const struct image *img)
{
    long pid = mosix_raw0(__NR_getpid);
    check_thread(pid, "cannot get the process id");
    queue_signals(img, img->proc.pid, pid, pid);
    queue_signals(img, 0, pid, pid);
}

long threads_new_tid(const struct image *img, uint32_t old)
{
    if (old == img->proc.pid)
        return mosix_raw0(__NR_getpid);
    for (uint32_t i = 0; i < img->nthreads; i++)
        if (img->threads[i].tid == old)
            return new_tids[i];
    return -ESRCH; /* the image's checks make this unreachable */
}

void threads_release(const struct image *img, struct barrier *b)
{
    uint32_t n = img->nthreads;
    if (n == 0)
        return;
    __atomic_store_n(&b->left, n, __ATOMIC_RELEASE);
    __atomic_store_n(&b->go, 1, __ATOMIC_RELEASE);
    futex_wake(&b->go);
    futex_wait_for(&b->left, 0);
}
