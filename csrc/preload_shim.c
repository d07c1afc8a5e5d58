/* preload_shim.c - the part of the MOSIX discipline inside a dynamic program.
 *
 * LD_PRELOADed by the launcher.  At load it asks the base filter whether it
 * runs under the discipline (a probe system call, answered with the outermost
 * mosrun's mode), takes its own mode from MOSIX_INHERIT, installs a
 * SIGSYS handler and a second, stacked filter (its TRAP and ERRNO beat the
 * base filter's user notification) for calls made from libc's text:
 *
 *   -e       unsupported calls fail with ENOSYS in the kernel (no signal: this
 *            works where libc blocks all signals, as pthread_create does)
 *   always   mmap MAP_SHARED without PROT_WRITE is trapped and re-issued as
 *            MAP_PRIVATE (the manual's -e fix-up; in every mode, as glibc maps
 *            its gconv cache so), without a warning: it does what was meant
 *   always   kill/tkill/tgkill/rt_(tg)sigqueueinfo/pidfd_send_signal with
 *            SIGSTOP are trapped and re-issued with SIGTSTP
 *   always   rt_sigaction(SIGSYS, act): succeeds without effect (ERRNO 0), so
 *            neither libc internals nor syscall(2) replace this handler
 *
 * In a migrated copy (restored with the direct channel), calls placed at home
 * trap with FWD_TRAP_MAGIC from the fast forward filter, and the handler sends
 * them to the deputy itself (shim_forward.c).  The handler runs with every
 * other signal blocked.
 *
 * Under -u and -w unsupported calls go on to the guard: its kill (or warning)
 * does not depend on any SIGSYS handler.
 *
 * Why libc's text and not "everything but the shim's text": filters survive
 * execve.  A filter keyed on this image's addresses stays inert in the next
 * image (a static program has no handler and would die of SIGSYS), and the
 * next image's shim, loaded elsewhere, is not caught by it.  The program's own
 * raw `syscall` instructions are left to the base filter and the guard.
 *
 * The libc-level sigaction/signal/sigprocmask/pthread_sigmask are interposed:
 * the program's SIGSYS disposition (per process) and blocked bit (per thread)
 * live in a shadow and are
 * reported consistently; SIGSYS is never really blocked through them.  A raw
 * rt_sigprocmask blocking SIGSYS does not escape either: a trap while SIGSYS
 * is blocked kills the process (the kernel resets it to SIG_DFL).
 *
 * The handler uses raw system calls only (no libc, no locks, no malloc).
 *
 * Threads (pinned home: docs/SYSCALLS.md) inherit both filters; each made by
 * pthread_create gets its own alternate signal stack (shim_threads.c).
 *
 * MOSIX's /proc/self/checkpoint* files are shim_checkpoint.c's. */
#include "mosix_shim.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <link.h>
#include <linux/audit.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "forward_table.h"
#include "raw_syscall.h"
#include "seccomp_table.h"
#include "shim_forward.h"
#include "shim_threads.h"
#include "shim_tids.h"

#define EXPORT __attribute__((visibility("default")))

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif
#define MAP_TYPE_BITS 0x3
#define MAP_PRIVATE_BIT 0x2

EXPORT int mosix_shim_loaded = 1;

/* What a checkpoint must record to install this filter again (see mosix_shim.h). */
__attribute__((used)) static struct mosix_shim_state state = {
    .magic = {'M', 'O', 'S', 'I', 'X', '-', 'S', 'H', 'I', 'M', '-', 'S', 'T', 'A', 'T', 'E'},
    .version = MOSIX_SHIM_STATE_VERSION,
};

static int active;               /* under a MOSIX base filter, handler installed */
static enum mosix_mode mode;     /* from the probe */
static struct sigaction shadow;  /* the program's idea of its SIGSYS disposition */
static uint64_t libc_lo, libc_hi; /* libc's text, the range the shim's filter covers */
/* the main thread's alternate stack (the fast path marshals on it); other
 * threads get their own (shim_threads.c) */
static char altstack[65536] __attribute__((aligned(16)));

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);
static sigaction_fn real_sigaction;
static sigmask_fn real_sigprocmask, real_pthread_sigmask;
static signal_fn real_signal;

static void resolve(void)
{
    if (real_sigaction)
        return;
    real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    real_sigprocmask = (sigmask_fn)dlsym(RTLD_NEXT, "sigprocmask");
    real_pthread_sigmask = (sigmask_fn)dlsym(RTLD_NEXT, "pthread_sigmask");
    real_signal = (signal_fn)dlsym(RTLD_NEXT, "signal");
}

/* ------------------------------------------------------------ the handler */

static void say(enum mosix_message kind, long nr)
{
    char comm[32] = "?";
    long fd = mosix_raw3(SYS_open, "/proc/self/comm", O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
        long n = mosix_raw3(SYS_read, fd, comm, sizeof(comm) - 1);
        if (n > 0) {
            comm[n] = '\0';
            for (char *c = comm; *c; c++)
                if (*c == '\n')
                    *c = '\0';
        }
        (void)mosix_raw1(SYS_close, fd);
    }
    char msg[MOSIX_MESSAGE_MAX];
    size_t len = mosix_message(msg, sizeof(msg), kind, comm, mosix_raw0(SYS_getpid), nr);
    mosix_raw3(SYS_write, 2, msg, len); /* a closed stderr loses the message */
}

static long unsupported(long nr)
{
    switch (mode) {
    case MOSIX_MODE_KILL:
        say(MOSIX_MSG_KILLED, nr);
        mosix_raw2(SYS_kill, mosix_raw0(SYS_getpid), SIGKILL);
        return -ENOSYS; /* not reached */
    case MOSIX_MODE_WARN:
        say(MOSIX_MSG_ENOSYS, nr);
        return -ENOSYS;
    case MOSIX_MODE_ENOSYS:
        break;
    }
    return -ENOSYS;
}

/* A SIGSYS that is not ours: what the program asked for, as the kernel would. */
static void forward(int sig, siginfo_t *info, void *ctx)
{
    void (*h)(int) = shadow.sa_handler;
    if (h == SIG_IGN && info->si_code != SYS_SECCOMP)
        return;
    if (h == SIG_DFL || h == SIG_IGN) {
        struct ksigaction dfl = {SIG_DFL, 0, NULL, 0};
        mosix_raw4(SYS_rt_sigaction, SIGSYS, &dfl, NULL, sizeof(dfl.mask));
        mosix_raw3(SYS_tgkill, mosix_raw0(SYS_getpid), mosix_raw0(SYS_gettid), SIGSYS);
        return; /* delivered as we return: SIGSYS is not blocked here (SA_NODEFER) */
    }
    if (shadow.sa_flags & SA_SIGINFO)
        shadow.sa_sigaction(sig, info, ctx);
    else
        h(sig);
}

/* A call for home, trapped by the fast forward filter: to the deputy, over the
 * direct channel.  A SIGSTOP sent from libc becomes SIGTSTP first, as the
 * shim's own filter (whose trap this one's replaces) would have made it. */
static void forward_home(ucontext_t *uc, long nr)
{
    greg_t *g = uc->uc_mcontext.gregs;
    uint64_t a[6] = {(uint64_t)g[REG_RDI], (uint64_t)g[REG_RSI], (uint64_t)g[REG_RDX],
                     (uint64_t)g[REG_R10], (uint64_t)g[REG_R8],  (uint64_t)g[REG_R9]};
    uint64_t ip = (uint64_t)g[REG_RIP];
    if (ip >= libc_lo && ip < libc_hi) {
        struct seccomp_data sd = {.nr = (int)nr, .arch = AUDIT_ARCH_X86_64, .instruction_pointer = ip};
        for (int i = 0; i < 6; i++)
            sd.args[i] = a[i];
        unsigned c = mosix_classify(&sd);
        if (MOSIX_OUTCOME(c) == MOSIX_OUTCOME_STOP_TO_TSTP)
            a[MOSIX_OUTCOME_ARG(c)] = SIGTSTP;
    }
    long ret;
    uint64_t program_mask;
    __builtin_memcpy(&program_mask, &uc->uc_sigmask, sizeof(program_mask));
    if (shim_forward_call(nr, a, program_mask, &ret) == SHIM_FORWARD_AGAIN) {
        /* the channel is gone (the copy is leaving), this is home, or a signal
         * interrupted the call at home and the kernel would restart it: again */
        g[REG_RIP] -= 2; /* back to the syscall instruction (2 bytes) */
        g[REG_RAX] = (greg_t)nr;
        return;
    }
    g[REG_RAX] = (greg_t)ret;
}

static void on_sigsys(int sig, siginfo_t *info, void *vctx)
{
    int saved_errno = errno;
    if (info->si_code == SYS_SECCOMP && info->si_errno == FWD_TRAP_MAGIC) {
        forward_home((ucontext_t *)vctx, info->si_syscall);
        errno = saved_errno;
        return;
    }
    if (info->si_code == SYS_SECCOMP && info->si_errno == MOSIX_TID_TRAP_MAGIC) {
        shim_tids_call((ucontext_t *)vctx, info->si_syscall); /* a recovered process's */
        errno = saved_errno;
        return;
    }
    if (info->si_code != SYS_SECCOMP || info->si_errno != MOSIX_TRAP_MAGIC) {
        forward(sig, info, vctx);
        errno = saved_errno;
        return;
    }
    greg_t *g = ((ucontext_t *)vctx)->uc_mcontext.gregs;
    struct seccomp_data sd;
    sd.nr = info->si_syscall;
    sd.arch = info->si_arch;
    sd.instruction_pointer = (uint64_t)g[REG_RIP];
    sd.args[0] = (uint64_t)g[REG_RDI];
    sd.args[1] = (uint64_t)g[REG_RSI];
    sd.args[2] = (uint64_t)g[REG_RDX];
    sd.args[3] = (uint64_t)g[REG_R10];
    sd.args[4] = (uint64_t)g[REG_R8];
    sd.args[5] = (uint64_t)g[REG_R9];
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = (long)sd.args[i];
    unsigned c = mosix_classify(&sd);
    unsigned on = MOSIX_OUTCOME_ARG(c);
    long nr = sd.nr, ret;
    switch (MOSIX_OUTCOME(c)) {
    case MOSIX_OUTCOME_STOP_TO_TSTP:
        a[on] = SIGTSTP;
        ret = mosix_raw6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        break;
    case MOSIX_OUTCOME_FIXUP_PRIVATE: /* no warning: the call does what was meant */
        a[on] = (a[on] & ~(long)MAP_TYPE_BITS) | MAP_PRIVATE_BIT;
        ret = mosix_raw6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        break;
    default: /* not trapped by this shim's filters; as the guard would */
        ret = unsupported(nr);
        break;
    }
    g[REG_RAX] = (greg_t)ret;
    errno = saved_errno;
}

/* ------------------------------------------------------------ set-up */

struct find_text {
    uintptr_t inside;
    uint64_t lo, hi;
};

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct find_text *f = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (f->inside >= lo && f->inside < hi) {
            f->lo = lo;
            f->hi = hi;
            return 1;
        }
    }
    return 0;
}

/* mosrun asked for another node: wait at the gate (a FIFO, MOSIX_START_GATE)
 * until the node agent has moved the process there, after every library is
 * loaded (loading needs the files' mappings, which stay home).  The agent
 * opens the FIFO for writing when it sees the reader, migrates the process
 * (the read is forwarded home and goes on waiting), then closes it: the read
 * returns 0 and the program starts wherever it is. */
static void start_gate(void)
{
    const char *gate = getenv(MOSIX_START_GATE_ENV);
    if (gate == NULL)
        return;
    char path[4096];
    size_t n = strlen(gate);
    if (n >= sizeof(path))
        return;
    memcpy(path, gate, n + 1);
    if (unsetenv(MOSIX_START_GATE_ENV) != 0) /* not for the program's children */
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char byte;
    ssize_t r;
    do
        r = read(fd, &byte, 1);
    while (r > 0 || (r < 0 && errno == EINTR));
    (void)close(fd); /* the gate's job is done either way */
}

static void shim_setup(void);

__attribute__((constructor)) static void shim_init(void)
{
    shim_setup();
    start_gate();
}

static void shim_setup(void)
{
    long probe = mosix_raw0(MOSIX_PROBE_NR);
    if (probe > -MOSIX_PROBE_ERRNO_BASE || probe < -(MOSIX_PROBE_ERRNO_BASE + 2))
        return; /* not under mosrun: stay out of the way */
    mode = (enum mosix_mode)(-probe - MOSIX_PROBE_ERRNO_BASE); /* the outermost mosrun's */
    const char *inherit = getenv(MOSIX_INHERIT_ENV);
    if (inherit != NULL)
        mode = mosix_mode_of_words(inherit, strlen(inherit), mode);
    resolve();
    if (!real_sigaction || !real_sigprocmask || !real_pthread_sigmask || !real_signal)
        return; /* the base filter and the guard still apply */

    struct find_text f = {(uintptr_t)&gnu_get_libc_version, 0, 0};
    if (dl_iterate_phdr(find_text, &f) == 0)
        return;
    /* the instruction pointer a filter sees is just after the syscall instruction */
    libc_lo = f.lo;
    libc_hi = f.hi + 1;

    stack_t ss = {.ss_sp = altstack, .ss_flags = 0, .ss_size = sizeof(altstack)};
    if (sigaltstack(&ss, NULL) != 0)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    /* every other signal blocked in the handler: a forwarded call's frames are
     * never interleaved with a nested one's */
    if (sigfillset(&sa.sa_mask) != 0 || sigdelset(&sa.sa_mask, SIGSYS) != 0 ||
        real_sigaction(SIGSYS, &sa, &shadow) != 0)
        return;
    sigset_t sys, old;
    if (sigemptyset(&sys) != 0 || sigaddset(&sys, SIGSYS) != 0 ||
        real_sigprocmask(SIG_UNBLOCK, &sys, &old) != 0)
        return;
    shim_sigsys_blocked = sigismember(&old, SIGSYS) == 1;
    active = 1;
    (void)shim_threads_init(); /* without it, threads run the handler on their own stacks */

    static struct sock_filter insns[MOSIX_FILTER_MAX];
    struct sock_fprog prog;
    enum mosix_filter_kind kind =
        mode == MOSIX_MODE_ENOSYS ? MOSIX_FILTER_SHIM_ENOSYS : MOSIX_FILTER_SHIM_NOTIFY;
    prog.len = (unsigned short)mosix_filter_build(kind, mode, libc_lo, libc_hi, insns);
    prog.filter = insns;
    /* Fails (ENOMEM) only past the kernel's limit on stacked instructions (very
     * deep exec chains); the base filter and the guard then do everything. */
    if (mosix_raw3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) != 0)
        return;
    state.kind = (uint32_t)kind;
    state.mode = (uint32_t)mode;
    state.libc_lo = libc_lo;
    state.libc_hi = libc_hi;
    state.active = 1;
}

/* ------------------------------------------------------------ interposers */

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    resolve();
    if (!active || sig != SIGSYS)
        return real_sigaction(sig, act, old);
    if (old)
        *old = shadow;
    if (act)
        shadow = *act;
    return 0;
}

EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    resolve();
    if (!active || sig != SIGSYS)
        return real_signal(sig, handler);
    if (handler == SIG_ERR) {
        errno = EINVAL;
        return SIG_ERR;
    }
    sighandler_t previous = shadow.sa_handler;
    memset(&shadow, 0, sizeof(shadow));
    shadow.sa_handler = handler;
    shadow.sa_flags = SA_RESTART;
    return previous;
}

/* Block/unblock/set the mask without ever blocking SIGSYS for real. */
static int masked(sigmask_fn real, int how, const sigset_t *set, sigset_t *old)
{
    int was = shim_sigsys_blocked, now = was;
    sigset_t copy;
    if (set) {
        copy = *set;
        int has = sigismember(set, SIGSYS) == 1;
        if (how == SIG_BLOCK)
            now = was || has;
        else if (how == SIG_UNBLOCK)
            now = was && !has;
        else if (how == SIG_SETMASK)
            now = has;
        (void)sigdelset(&copy, SIGSYS);
        set = &copy;
    }
    int r = real(how, set, old);
    if (r != 0) /* -1 and errno, or an error number: as the real one said */
        return r;
    shim_sigsys_blocked = now;
    if (old) {
        if (was)
            (void)sigaddset(old, SIGSYS);
        else
            (void)sigdelset(old, SIGSYS);
    }
    return r;
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    resolve();
    if (!active)
        return real_sigprocmask(how, set, old);
    return masked(real_sigprocmask, how, set, old);
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    resolve();
    if (!active)
        return real_pthread_sigmask(how, set, old);
    return masked(real_pthread_sigmask, how, set, old);
}
