/* restore_state.c - the kernel's state of the process, and the jump back into it. */
#include "restore.h"

#include <asm-generic/fcntl.h>
#include <linux/fcntl.h>

#include <asm/errno.h>
#include <asm/mman.h>
#include <asm/prctl.h>
#include <asm/sigcontext.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <linux/time.h>

#include "mosix_shim.h"
#include "forward_table.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef SECCOMP_FILTER_FLAG_SPEC_ALLOW
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW (1UL << 2)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

#define SIGKILL_NR 9
#define SIGSTOP_NR 19

__attribute__((noreturn)) void state_failed(const char *what, long rc)
{
    msg_begin();
    msg_str(what);
    msg_err(rc);
    msg_refuse();
}
#define failed state_failed

static void check(long rc, const char *what)
{
    if (rc < 0)
        failed(what, rc);
}

/* ------------------------------------------------------------ before memory */

/* The memory layout the kernel reports (/proc/PID/stat, cmdline, environ, auxv)
 * and uses for brk.  Set while nothing is torn down yet: the kernel checks the
 * fields then, and a refusal here still leaves the caller's process whole.
 * exe_fd -1 keeps /proc/self/exe (changing it needs CAP_SYS_RESOURCE). */
void state_set_mm(const struct image *img)
{
    const struct mosix_ckpt_process *p = &img->proc;
    struct prctl_mm_map map = {
        .start_code = p->start_code,
        .end_code = p->end_code,
        .start_data = p->start_data,
        .end_data = p->end_data,
        .start_brk = p->start_brk,
        .brk = p->brk,
        .start_stack = p->start_stack,
        .arg_start = p->arg_start,
        .arg_end = p->arg_end,
        .env_start = p->env_start,
        .env_end = p->env_end,
        .auxv = (__u64 *)p->auxv,
        .auxv_size = p->auxv_words * 8u,
        .exe_fd = (uint32_t)-1,
    };
    long rc = mosix_raw6(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&map, sizeof(map), 0, 0);
    if (rc < 0)
        failed("the kernel refuses the image's memory layout (PR_SET_MM_MAP)", rc);
}

/* personality(2) is not among the calls the discipline allows: only called
 * when the image's differs from ours (/proc/self/personality). */
void state_set_personality(const struct image *img)
{
    char text[32];
    uint64_t now;
    (void)read_small_file("/proc/self/personality", text, sizeof(text));
    (void)parse_hex(text, &now);
    if (now == img->proc.personality)
        return;
    check(mosix_raw1(__NR_personality, img->proc.personality), "cannot set the personality");
}

/* ------------------------------------------------------------ after memory */

static void set_signals(const struct image *img)
{
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL_NR || sig == SIGSTOP_NR)
            continue;
        /* The image's entries are the kernel's struct sigaction. */
        long rc = mosix_raw4(__NR_rt_sigaction, sig, &img->sigactions[sig - 1], 0, 8);
        if (rc < 0) {
            msg_begin();
            msg_str("cannot set the action of signal ");
            msg_dec((uint64_t)sig);
            msg_err(rc);
            msg_refuse();
        }
    }
}

static void set_timers(const struct image *img)
{
    for (int which = 0; which < 3; which++) {
        const int64_t *t = &img->proc.itimers[which * 4];
        if (t[2] == 0 && t[3] == 0)
            continue; /* disarmed, as in a new process */
        struct {
            struct timeval interval, value;
        } v = {{t[0], t[1]}, {t[2], t[3]}};
        check(mosix_raw3(__NR_setitimer, which, &v, 0), "cannot set an interval timer");
    }
}

/* The shim's filter, as the shim had installed it (the base filter is the
 * launcher's, already in force). */
static void install_shim_filter(const struct image *img)
{
    const struct mosix_ckpt_process *p = &img->proc;
    static struct sock_filter prog[MOSIX_FILTER_MAX];
    if (p->shim_kind == MOSIX_CKPT_SHIM_NONE || migration.home)
        return; /* none, or still in force (a deputy's filters survive its exec) */
    enum mosix_filter_kind kind = p->shim_kind == MOSIX_CKPT_SHIM_NOTIFY
                                      ? MOSIX_FILTER_SHIM_NOTIFY
                                      : MOSIX_FILTER_SHIM_ENOSYS;
    size_t n = mosix_filter_build(kind, (enum mosix_mode)p->shim_mode, p->shim_lo, p->shim_hi,
                                  prog);
    struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
    long nnp = mosix_raw6(__NR_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0, 0);
    check(nnp, "cannot read no_new_privs");
    if (nnp == 0)
        check(mosix_raw6(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0),
              "cannot set no_new_privs");
    check(mosix_raw3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
                     &fprog),
          "cannot install the shim's filter");
}

/* -D: the direct channels go to FWD_DIRECT_FD, FWD_DIRECT_FD - 1, ... when the
 * image has the shim's SIGSYS handler (its filter is recorded only once the
 * handler is in place), and the fast variant of the filter is used; otherwise
 * they are closed.  Returns whether the fast path is on. */
_Static_assert(sizeof(migration.direct_fds) / sizeof(int) == FWD_DIRECT_MAX,
               "one -D per direct channel the filter lets through");

static int place_direct_channels(const struct image *img)
{
    int n = migration.directs;
    if (n == 0)
        return 0;
    if (img->proc.shim_kind == MOSIX_CKPT_SHIM_NONE) {
        for (int k = 0; k < n; k++)
            check(mosix_raw1(__NR_close, migration.direct_fds[k]),
                  "cannot close the direct channel");
        return 0;
    }
    /* first out of the way of each other's places, then each to its own */
    for (int k = 0; k < n; k++) {
        int fd = migration.direct_fds[k];
        if (fd > FWD_DIRECT_FD - FWD_DIRECT_MAX && fd <= FWD_DIRECT_FD) {
            long moved = mosix_raw3(__NR_fcntl, fd, F_DUPFD_CLOEXEC, 3);
            check(moved, "cannot place the direct channel");
            check(mosix_raw1(__NR_close, fd), "cannot close the direct channel");
            migration.direct_fds[k] = (int)moved;
        }
    }
    for (int k = 0; k < n; k++) {
        check(mosix_raw3(__NR_dup3, migration.direct_fds[k], FWD_DIRECT_FD - k, O_CLOEXEC),
              "cannot place the direct channel");
        check(mosix_raw1(__NR_close, migration.direct_fds[k]), "cannot close the direct channel");
    }
    return 1;
}

/* Migration, remote side: the forward filter (forward_table.h; its fast variant
 * with the direct channel), its listener sent to mosix-remote over sock.  Calls
 * from here on pass by their address. */
static void install_forward_filter(const struct image *img, int sock)
{
    struct sock_fprog fprog = {.len = (unsigned short)(sizeof(mosix_forward_filter) /
                                                       sizeof(mosix_forward_filter[0])),
                               .filter = (struct sock_filter *)mosix_forward_filter};
    if (place_direct_channels(img)) {
        fprog.len = (unsigned short)(sizeof(mosix_forward_filter_fast) /
                                     sizeof(mosix_forward_filter_fast[0]));
        fprog.filter = (struct sock_filter *)mosix_forward_filter_fast;
    }
    /* The other threads wait at the barrier with the main thread's filters
     * (inherited at their clone): TSYNC puts the forward filter on them too, in
     * the same instant (TSYNC_ESRCH: with a listener, a thread that cannot
     * follow fails the call with ESRCH rather than naming itself). */
    /* Once mosix-remote has received a call, the thread waits for its answer
     * killable (Linux 5.19): an answer it sent is never dropped because a
     * signal of the copy's own woke the wait just before (remote_restart.h). */
    long flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_SPEC_ALLOW |
                 SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    if (img->nthreads)
        flags |= SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    long listener = mosix_raw3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    if (listener < 0)
        failed("cannot install the forward filter", listener);
    int fd = (int)listener;
    /* struct msghdr with one SCM_RIGHTS descriptor, spelled out: no libc here */
    struct {
        uint64_t len;
        int32_t level, type;
        int32_t fd, pad;
    } cmsg = {sizeof(uint64_t) + 2 * sizeof(int32_t) + sizeof(int32_t), 1 /* SOL_SOCKET */,
              1 /* SCM_RIGHTS */, fd, 0};
    char byte = 'L';
    struct {
        void *base;
        uint64_t len;
    } iov = {&byte, 1};
    struct {
        void *name;
        int32_t namelen, pad;
        void *iov;
        uint64_t iovlen;
        void *control;
        uint64_t controllen;
        int32_t flags, pad2;
    } m = {0, 0, 0, &iov, 1, &cmsg, sizeof(cmsg), 0, 0};
    long rc = mosix_raw3(__NR_sendmsg, sock, (long)&m, 0x4000 /* MSG_NOSIGNAL */);
    if (rc != 1)
        failed("cannot hand over the forward filter's listener", rc < 0 ? rc : -EPIPE);
    check(mosix_raw1(__NR_close, fd), "cannot close the listener");
    check(mosix_raw1(__NR_close, sock), "cannot close the supervisor's socket");
}

/* The caller opened the files inheritable (they had to survive its exec of us). */
static void set_cloexec(const struct image *img)
{
    for (int fd = 0; fd < MOSIX_CKPT_MAX_FILES; fd++)
        if (img->cloexec[fd / 64] & (1ull << (fd % 64)))
            check(mosix_raw3(__NR_fcntl, fd, F_SETFD, FD_CLOEXEC), "cannot set close-on-exec");
}

void state_apply(const struct image *img)
{
    const struct mosix_ckpt_process *p = &img->proc;
    set_cloexec(img);
    char comm[16];
    __builtin_memcpy(comm, p->comm, sizeof(comm));
    comm[15] = '\0';
    check(mosix_raw6(__NR_prctl, PR_SET_NAME, (long)comm, 0, 0, 0, 0), "cannot set the name");
    check(mosix_raw2(__NR_arch_prctl, ARCH_SET_FS, img->regs.fs_base), "cannot set FS base");
    check(mosix_raw2(__NR_arch_prctl, ARCH_SET_GS, img->regs.gs_base), "cannot set GS base");
    if (p->tid_addr)
        /* libc's copy of the main thread's id (glibc: struct pthread's tid) stays the
         * image's: the process's own id, which the mutexes it holds (recursive,
         * error-checking, robust: their owner and lock words) name as their owner.
         * The kernel clears it when the thread ends. */
        check(mosix_raw1(__NR_set_tid_address, p->tid_addr), "cannot set the thread id address");
    if (p->robust_list)
        check(mosix_raw2(__NR_set_robust_list, p->robust_list, p->robust_len),
              "cannot set the robust futex list");
    if (p->rseq_len)
        check(mosix_raw4(__NR_rseq, p->rseq_addr, p->rseq_len, 0, p->rseq_sig),
              "cannot register rseq");
    if (migration.forward_sock >= 0)
        /* the program's calls that use it run at home, but those on its private
         * files (mosrun -X) run here, by its supervisor, which takes it from here */
        (void)mosix_raw1(__NR_umask, p->umask & 0777); /* cannot fail: the old mask */
    set_signals(img);
    install_shim_filter(img);
    tids_prepare(img);
    set_timers(img);
}

/* ------------------------------------------------------------ resume */

/* The kernel's rt_sigframe as rt_sigreturn reads it: the ucontext at rsp. */
struct frame {
    uint64_t pretcode; /* a signal's return address; rt_sigreturn reads from rsp - 8 */
    struct {
        uint64_t uc_flags, uc_link;
        uint64_t ss_sp;
        int32_t ss_flags, ss_pad;
        uint64_t ss_size;
        struct sigcontext mcontext;
        uint64_t sigmask;
    } uc;
};
_Static_assert(__builtin_offsetof(struct frame, uc.mcontext) == 48, "ucontext layout");
_Static_assert(__builtin_offsetof(struct frame, uc.sigmask) == 8 + 296, "ucontext layout");

/* The trampoline: a code page (the main thread's exit, then the other
 * threads' waiter), the barrier's page, then per thread (the main one first)
 * its frame's page and its XSAVE copy's pages (XRSTOR wants 64-byte alignment). */
#define TRAMP_CODE MOSIX_CKPT_TRAMPOLINE
#define TRAMP_WAITER (MOSIX_CKPT_TRAMPOLINE + 256)
#define TRAMP_BARRIER (MOSIX_CKPT_TRAMPOLINE + PAGE)
#define TRAMP_SLOTS (MOSIX_CKPT_TRAMPOLINE + 2 * PAGE)
#define SW_BYTES 464 /* struct _fpx_sw_bytes in the FXSAVE area's software-reserved bytes */

static unsigned char *emit(unsigned char *p, const void *bytes, size_t n)
{
    __builtin_memcpy(p, bytes, n);
    return p + n;
}

static unsigned char *emit_u64(unsigned char *p, uint64_t v) { return emit(p, &v, 8); }
static unsigned char *emit_u32(unsigned char *p, uint32_t v) { return emit(p, &v, 4); }

/* munmap(RESTORER_BASE, RESTORER_SPAN); rsp = &frame->uc; rt_sigreturn.
 * The munmap's result goes unchecked: nothing is left to report it with, and
 * it cannot fail on a whole, page-aligned user range (a failure would only
 * leave the restorer's pages mapped).  rt_sigreturn does not return: a frame
 * the kernel rejects ends the process with SIGSEGV, so everything in the frame
 * was checked before (validate_xstate, the segments). */
static void write_code(unsigned char *p, uint64_t main_uc)
{
    p = emit(p, "\x48\xbf", 2); /* movabs $RESTORER_BASE, %rdi */
    p = emit_u64(p, MOSIX_CKPT_RESTORER_BASE);
    p = emit(p, "\xbe", 1); /* mov $RESTORER_SPAN, %esi */
    p = emit_u32(p, (uint32_t)MOSIX_CKPT_RESTORER_SPAN);
    p = emit(p, "\xb8\x0b\x00\x00\x00\x0f\x05", 7); /* mov $__NR_munmap, %eax; syscall */
    p = emit(p, "\x48\xbc", 2);                      /* movabs $frame->uc, %rsp */
    p = emit_u64(p, main_uc);
    p = emit(p, "\xb8\x0f\x00\x00\x00\x0f\x05", 7); /* mov $__NR_rt_sigreturn, %eax; syscall */
    (void)emit(p, "\x0f\x0b", 2);                    /* ud2: never reached */
}

static void write_fpstate(const struct image *img, const unsigned char *xstate, unsigned char *fp)
{
    uint32_t size = img->proc.xsave_size;
    __builtin_memcpy(fp, xstate, size);
    struct _fpx_sw_bytes sw = {
        .magic1 = FP_XSTATE_MAGIC1,
        .extended_size = size + FP_XSTATE_MAGIC2_SIZE,
        .xfeatures = img->proc.xfeatures,
        .xstate_size = size,
    };
    __builtin_memcpy(fp + SW_BYTES, &sw, sizeof(sw));
    uint32_t magic2 = FP_XSTATE_MAGIC2;
    __builtin_memcpy(fp + size, &magic2, sizeof(magic2));
}

/* One thread's state as rt_sigreturn takes it. */
struct thread_state {
    const struct mosix_ckpt_regs *regs;
    const unsigned char *xstate;
    uint64_t altstack_sp, altstack_size;
    int32_t altstack_flags;
    uint64_t sigmask;
};

static void write_frame(const struct thread_state *t, struct frame *f, uint64_t fpstate)
{
    const struct mosix_ckpt_regs *g = t->regs;
    f->pretcode = 0;
    f->uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
    f->uc.uc_link = 0;
    f->uc.ss_sp = t->altstack_sp;
    f->uc.ss_flags = t->altstack_flags;
    f->uc.ss_size = t->altstack_size;
    struct sigcontext *c = &f->uc.mcontext;
    *c = (struct sigcontext){
        .r8 = g->r8, .r9 = g->r9, .r10 = g->r10, .r11 = g->r11,
        .r12 = g->r12, .r13 = g->r13, .r14 = g->r14, .r15 = g->r15,
        .rdi = g->rdi, .rsi = g->rsi, .rbp = g->rbp, .rbx = g->rbx,
        .rdx = g->rdx, .rax = g->rax, .rcx = g->rcx, .rsp = g->rsp,
        .rip = g->rip, .eflags = g->eflags,
        .cs = 0x33, .ss = 0x2b, /* __USER_CS, __USER_DS */
        .fpstate = (struct _fpstate_64 *)fpstate,
    };
    f->uc.sigmask = t->sigmask;
}

static struct thread_state state_of(const struct image *img, uint32_t i, struct mosix_ckpt_regs *r)
{
    const struct mosix_ckpt_process *p = &img->proc;
    if (i == 0)
        return (struct thread_state){&img->regs, img->xstate, p->altstack_sp, p->altstack_size,
                                     p->altstack_flags, p->sigmask};
    const struct mosix_ckpt_thread *t = &img->threads[i - 1];
    __builtin_memcpy(r, t->regs, sizeof(*r));
    return (struct thread_state){r, thread_xstate(img, i - 1), t->altstack_sp, t->altstack_size,
                                 t->altstack_flags, t->sigmask};
}

/* The trampoline outlives the restorer: the code, the barrier, each thread's
 * frame and XSAVE copy.  It stays in the recovered process (a later capture
 * skips it).  The other threads are made here, each waits at the barrier in
 * the trampoline's code; the main thread lets them go, waits until all have
 * left, and resumes last. */
__attribute__((noreturn)) void state_resume(const struct image *img, int fd)
{
    uint64_t fp_pages = (img->proc.xsave_size + FP_XSTATE_MAGIC2_SIZE + PAGE - 1) / PAGE;
    uint64_t slot = (1 + fp_pages) * PAGE, n = img->nthreads + 1;
    uint64_t len = 2 * PAGE + n * slot;
    _Static_assert(2 * PAGE + MOSIX_CKPT_MAX_THREADS * (2 * PAGE + MOSIX_CKPT_MAX_XSAVE) <=
                       MOSIX_CKPT_TRAMPOLINE_SPAN,
                   "trampoline span");
    long rc = mosix_raw6(__NR_mmap, TRAMP_CODE, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (rc < 0 || (uint64_t)rc != TRAMP_CODE)
        failed("cannot map the trampoline", rc < 0 ? rc : -EEXIST);
    static uint64_t frames[MOSIX_CKPT_MAX_THREADS]; /* each thread's ucontext */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t at = TRAMP_SLOTS + i * slot;
        struct mosix_ckpt_regs regs;
        struct thread_state t = state_of(img, i, &regs);
        write_frame(&t, (struct frame *)at, at + PAGE);
        write_fpstate(img, t.xstate, (unsigned char *)(at + PAGE));
        frames[i] = at + 8;
    }
    write_code((unsigned char *)TRAMP_CODE, frames[0]);
    uint64_t waiter_len = (uint64_t)(mosix_thread_waiter_end - mosix_thread_waiter);
    if (TRAMP_WAITER + waiter_len > TRAMP_CODE + PAGE)
        failed("the threads' waiter does not fit the trampoline", -EFBIG);
    __builtin_memcpy((void *)TRAMP_WAITER, mosix_thread_waiter, waiter_len);
    check(mosix_raw3(__NR_mprotect, TRAMP_CODE, PAGE, PROT_READ | PROT_EXEC),
          "cannot protect the trampoline");
    struct barrier *b = (struct barrier *)TRAMP_BARRIER;
    threads_create(img, b, frames + 1, TRAMP_WAITER);
    tids_note_kernel(img);
    timers_restore(img);
    threads_queue_main_signals(img);
    check(mosix_raw3(__NR_mprotect, TRAMP_SLOTS, len - 2 * PAGE, PROT_READ),
          "cannot protect the trampoline");
    check(mosix_raw1(__NR_close, fd), "cannot close the image");
    if (migration.forward_sock >= 0)
        install_forward_filter(img, migration.forward_sock);
    if (msg_fd_get() != 2)
        check(mosix_raw1(__NR_close, msg_fd_get()), "cannot close the error descriptor");
    threads_release(img, b);
    __asm__ volatile("jmp *%0" : : "r"(TRAMP_CODE) : "memory");
    __builtin_unreachable();
}
