/* ckpt_capture_trace.c - ptrace: seize, stop, run system calls in a tracee, release.
 *
 * Kernel facts this relies on:
 * - PTRACE_SEIZE does not stop the tracee; PTRACE_INTERRUPT makes it trap
 *   (PTRACE_EVENT_STOP) in get_signal(), before the kernel's restart logic for
 *   an interrupted call has run: rax is still -ERESTART*, orig_rax the call.
 *   A group-stopped tracee reports the same trap, and PTRACE_DETACH puts it
 *   back into the group stop (__ptrace_unlink reinstates JOBCTL_STOP_PENDING).
 * - Injecting a call: registers with rip on a syscall instruction, rax the
 *   number and orig_rax -1 (so the restart logic that runs when the tracee
 *   leaves the trap sees no interrupted call), then PTRACE_SYSCALL to the
 *   entry stop and again to the exit stop.
 * - Seccomp runs after the entry stop: the calls injected here must be allowed
 *   by the discipline's filter (docs/SYSCALLS.md); they are made from the vDSO,
 *   outside libc's text, so the shim's filter does not look at them.
 * - A signal that arrives while a call is injected must not be delivered on
 *   the injected registers: it is held back (suppressed at its delivery stop)
 *   and sent again after the detach.
 * - A call trapped by a seccomp filter (SECCOMP_RET_TRAP: the preload shim's
 *   fix-ups, and away from home every call of the fast path) is skipped by
 *   the kernel, which leaves rax = orig_rax = its number (syscall_rollback),
 *   rip after the syscall instruction, and queues a SIGSYS (si_code
 *   SYS_SECCOMP) whose handler does the call's work.  PTRACE_INTERRUPT can
 *   trap between the two (get_signal() runs job-control traps before it
 *   dequeues a signal).  Captured as it is, the image would resume after the
 *   call with its number as its result and no SIGSYS (the siginfo that says
 *   what to do cannot be queued again by another process: sending the signal
 *   again would reach the handler as a kill): a read returns 0, a write 1, a
 *   poll 7.  So the trap is undone instead: the saved registers issue the call
 *   again (rip back to the instruction, rax its number), which traps again
 *   wherever the process continues (live, or restored at home or elsewhere),
 *   and the pending SIGSYS is dropped at its delivery stop. */
#include "ckpt_capture_common.h"
#include "mosix_shim.h"
#include "seccomp_table.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516
#define NR_RESTART_SYSCALL 219
#define SYSCALL_INSN_LEN 2 /* 0f 05 */
#define INJECT_TRIES 16
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1 /* si_code of a seccomp trap's SIGSYS */
#endif

static int is_restart_code(int64_t rax)
{
    return rax == -ERESTARTSYS || rax == -ERESTARTNOINTR || rax == -ERESTARTNOHAND ||
           rax == -ERESTART_RESTARTBLOCK;
}

/* ------------------------------------------------------------ stops */

/* The next stop of the tracee (0), or -1 when it ended or waitpid failed;
 * with leave (>= 0: ck_terminations before the wait), also when a
 * termination signal comes meanwhile (see ck_interrupt). */
static int wait_stop_or_leave(struct ck_tracee *t, int *status, int leave)
{
    for (;;) {
        if (leave >= 0 && ck_terminations != leave) {
            /* nothing of it changed yet: it is left to the kernel, which detaches
             * it when this process ends (and drops the trap PTRACE_INTERRUPT
             * asked for): it runs on, untraced */
            ck_set_why("interrupted by a signal");
            t->attached = 0;
            return -1;
        }
        pid_t r = waitpid(t->pid, status, __WALL);
        if (r < 0 && errno == EINTR)
            continue; /* a termination signal: never abandon a tracee mid-step */
        if (r < 0) {
            ck_set_why_errno("waitpid %d", t->pid);
            t->attached = 0;
            return -1;
        }
        if (WIFEXITED(*status) || WIFSIGNALED(*status)) {
            t->dead = 1;
            t->attached = 0;
            if (WIFSIGNALED(*status))
                ck_set_why("process %d was killed by signal %d", t->pid, WTERMSIG(*status));
            else
                ck_set_why("process %d exited", t->pid);
            return -1;
        }
        if (WIFSTOPPED(*status))
            return 0;
    }
}

static int wait_stop(struct ck_tracee *t, int *status)
{
    return wait_stop_or_leave(t, status, -1);
}

/* What kind of stop status is; signal-delivery stops leave the signal in *sig. */
static enum ck_stop classify(struct ck_tracee *t, int status, int *sig)
{
    int s = WSTOPSIG(status);
    unsigned event = (unsigned)status >> 16;
    *sig = 0;
    if (s == (SIGTRAP | 0x80)) {
        struct __ptrace_syscall_info info;
        memset(&info, 0, sizeof(info));
        if (ptrace(PTRACE_GET_SYSCALL_INFO, t->pid, (void *)sizeof(info), &info) < 0)
            return CK_STOP_EXIT; /* cannot happen on a syscall stop; treat as the safer kind */
        return info.op == PTRACE_SYSCALL_INFO_ENTRY ? CK_STOP_ENTRY : CK_STOP_EXIT;
    }
    if (event == PTRACE_EVENT_CLONE) {
        unsigned long child = 0;
        if (ptrace(PTRACE_GETEVENTMSG, t->pid, 0, &child) == 0)
            t->new_child = (pid_t)child;
        return CK_STOP_EVENT;
    }
    if (event != 0)
        return CK_STOP_EVENT;
    *sig = s;
    return CK_STOP_SIGNAL;
}

static int resume(struct ck_tracee *t, enum __ptrace_request req, int sig)
{
    if (ptrace(req, t->pid, 0, (void *)(long)sig) < 0) {
        ck_set_why_errno("ptrace resume %d", t->pid);
        return -1;
    }
    t->stop = CK_RUNNING;
    return 0;
}

static void hold(struct ck_tracee *t, int sig)
{
    if (sig >= 1 && sig <= CK_NSIG && t->held[sig - 1] < UINT16_MAX)
        t->held[sig - 1]++; /* real-time signals queue: each is sent again */
}

/* The trap's SIGSYS, at its delivery stop (see the top of this file). */
static int is_trap_sigsys(struct ck_tracee *t, int sig)
{
    siginfo_t si;
    if (!t->trap_pending || sig != SIGSYS)
        return 0;
    if (ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si) < 0)
        return 0; /* held back and sent again: what it did before */
    return si.si_code == SYS_SECCOMP;
}

/* A signal at its delivery stop while calls are injected: held back, or, the
 * trap's SIGSYS of a call to be issued again, dropped. */
static void hold_or_drop(struct ck_tracee *t, int sig)
{
    if (is_trap_sigsys(t, sig))
        t->trap_pending = 0;
    else
        hold(t, sig);
}

/* Stopped just after a seccomp trap, its SIGSYS not delivered yet: 1, 0, or
 * -1 (ck_why).  The SIGSYS is in the thread's own queue, with the call's
 * number and the address after its syscall instruction. */
static int stopped_after_trap(struct ck_tracee *t, const struct user_regs_struct *r)
{
    if ((int64_t)r->orig_rax < 0 || r->rax != r->orig_rax)
        return 0;
    siginfo_t si[16];
    struct __ptrace_peeksiginfo_args want = {.off = 0, .flags = 0, .nr = 16};
    for (;;) {
        long n = ptrace(PTRACE_PEEKSIGINFO, t->pid, &want, si);
        if (n < 0) {
            ck_set_why_errno("PTRACE_PEEKSIGINFO %d", t->pid);
            return -1;
        }
        for (long i = 0; i < n; i++)
            if (si[i].si_signo == SIGSYS && si[i].si_code == SYS_SECCOMP &&
                si[i].si_syscall == (int)r->orig_rax &&
                (uint64_t)(uintptr_t)si[i].si_call_addr == r->rip)
                return 1;
        if (n < (long)want.nr)
            return 0;
        want.off += (uint64_t)n;
    }
}

/* Resume with PTRACE_SYSCALL until a stop of kind want (ENTRY or EXIT);
 * signals on the way are held back, event stops passed.  Signal stops are
 * bounded apart: every signal queued while the process was held is one stop
 * here (a sender that queued thousands is not a process that never reaches
 * the call). */
static int run_to(struct ck_tracee *t, enum ck_stop want)
{
    long signals = 0;
    for (int guard = 0; guard < 1000;) {
        if (resume(t, PTRACE_SYSCALL, 0) < 0)
            return -1;
        int status, sig;
        if (wait_stop(t, &status) < 0)
            return -1;
        t->stop = classify(t, status, &sig);
        if (t->stop == CK_STOP_SIGNAL) {
            hold_or_drop(t, sig);
            if (++signals < (1L << 22))
                continue;
        }
        guard++;
        if (t->stop == want)
            return 0;
        if (t->stop == CK_STOP_EXIT && want == CK_STOP_ENTRY) {
            ck_set_why("process %d: unexpected system call exit stop", t->pid);
            return -1;
        }
    }
    ck_set_why("process %d does not reach the injected system call", t->pid);
    return -1;
}

static int getregs(struct ck_tracee *t, struct user_regs_struct *r)
{
    if (ptrace(PTRACE_GETREGS, t->pid, 0, r) < 0) {
        ck_set_why_errno("PTRACE_GETREGS %d", t->pid);
        return -1;
    }
    return 0;
}

static int setregs(struct ck_tracee *t, const struct user_regs_struct *r)
{
    if (ptrace(PTRACE_SETREGS, t->pid, 0, r) < 0) {
        ck_set_why_errno("PTRACE_SETREGS %d", t->pid);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ attach */

int ck_seize(struct ck_tracee *t, pid_t pid)
{
    t->pid = pid;
    t->attached = 0;
    t->dead = 0;
    t->stop = CK_RUNNING;
    t->have_saved = 0;
    t->regs_dirty = 0;
    memset(t->held, 0, sizeof(t->held));
    t->trap_pending = 0;
    t->new_child = 0;
    t->tgid = 0;
    if (ptrace(PTRACE_SEIZE, pid, 0, (void *)(long)PTRACE_O_TRACESYSGOOD) < 0) {
        ck_set_why_errno("cannot trace process %d", pid);
        return -1;
    }
    t->attached = 1;
    return 0;
}

int ck_interrupt(struct ck_tracee *t)
{
    int leave = ck_terminations; /* a termination signal from now on ends the wait */
    if (ptrace(PTRACE_INTERRUPT, t->pid, 0, 0) < 0) {
        ck_set_why_errno("PTRACE_INTERRUPT %d", t->pid);
        return -1;
    }
    for (;;) {
        int status, sig;
        if (wait_stop_or_leave(t, &status, leave) < 0)
            return -1;
        t->stop = classify(t, status, &sig);
        if (t->stop == CK_STOP_EVENT)
            break;
        if (t->stop != CK_STOP_SIGNAL) {
            ck_set_why("process %d: unexpected stop %#x", t->pid, (unsigned)status);
            return -1;
        }
        /* nothing is changed yet: the signal is delivered as usual, the trap follows */
        if (resume(t, PTRACE_CONT, sig) < 0)
            return -1;
    }
    if (getregs(t, &t->saved) < 0)
        return -1;
    t->have_saved = 1;
    t->regs_dirty = 0;
    int trapped = stopped_after_trap(t, &t->saved);
    if (trapped < 0)
        return -1;
    if (trapped) { /* undone: the call is issued again (the top of this file) */
        t->saved.rip -= SYSCALL_INSN_LEN;
        t->saved.rax = t->saved.orig_rax;
        t->saved.orig_rax = (uint64_t)-1;
        t->trap_pending = 1;
    }
    return 0;
}

int ck_adopt(struct ck_tracee *t, pid_t pid, uint64_t syscall_at)
{
    memset(t, 0, sizeof(*t));
    t->pid = pid;
    t->attached = 1; /* auto-attached by PTRACE_O_TRACECLONE */
    t->syscall_at = syscall_at;
    for (;;) {
        int status, sig;
        if (wait_stop(t, &status) < 0)
            return -1;
        t->stop = classify(t, status, &sig);
        if (t->stop == CK_STOP_EVENT)
            break;
        /* a signal to the process group: the copy never gets it */
        if (resume(t, PTRACE_CONT, 0) < 0)
            return -1;
    }
    if (getregs(t, &t->saved) < 0)
        return -1;
    t->have_saved = 1;
    return 0;
}

int ck_setoptions(struct ck_tracee *t, unsigned long options)
{
    if (ptrace(PTRACE_SETOPTIONS, t->pid, 0, (void *)options) < 0) {
        ck_set_why_errno("PTRACE_SETOPTIONS %d", t->pid);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ injection */

static int inject_once(struct ck_tracee *t, long nr, const uint64_t a[6], int64_t *ret)
{
    struct user_regs_struct r = t->saved;
    r.rax = (uint64_t)nr;
    r.rdi = a[0];
    r.rsi = a[1];
    r.rdx = a[2];
    r.r10 = a[3];
    r.r8 = a[4];
    r.r9 = a[5];
    r.rip = t->syscall_at;
    r.orig_rax = (uint64_t)-1; /* no restart logic on the way out of the current stop */
    if (setregs(t, &r) < 0)
        return -1;
    t->regs_dirty = 1;
    if (run_to(t, CK_STOP_ENTRY) < 0)
        return -1;
    struct __ptrace_syscall_info info;
    memset(&info, 0, sizeof(info));
    if (ptrace(PTRACE_GET_SYSCALL_INFO, t->pid, (void *)sizeof(info), &info) < 0) {
        ck_set_why_errno("PTRACE_GET_SYSCALL_INFO %d", t->pid);
        return -1;
    }
    if ((long)info.entry.nr != nr) {
        ck_set_why("process %d entered system call %lld instead of %ld", t->pid,
                   (long long)info.entry.nr, nr);
        return -1;
    }
    if (run_to(t, CK_STOP_EXIT) < 0)
        return -1;
    struct user_regs_struct out;
    if (getregs(t, &out) < 0)
        return -1;
    *ret = (int64_t)out.rax;
    return 0;
}

int ck_inject(struct ck_tracee *t, long nr, const uint64_t args[6], int64_t *ret)
{
    if (!t->attached || t->stop == CK_RUNNING || t->stop == CK_STOP_ENTRY) {
        ck_set_why("process %d is not stopped where a call can be injected", t->pid);
        return -1;
    }
    for (int i = 0; i < INJECT_TRIES; i++) {
        if (inject_once(t, nr, args, ret) < 0)
            return -1;
        if (!is_restart_code(*ret)) /* a signal came in during the call: issue it again */
            return 0;
    }
    ck_set_why("process %d: system call %ld keeps being interrupted", t->pid, nr);
    return -1;
}

/* Execute another program in the stopped tracee: execve(path, argv, envp)
 * with all three already in its memory.  On success the tracee is at the
 * exit stop of execve in the new program, whose registers are its own: they
 * are not put back at release.  0 (then *ret is 0 or -errno) or -1 (ck_why). */
int ck_inject_exec(struct ck_tracee *t, uint64_t path, uint64_t argv, uint64_t envp, int64_t *ret)
{
    const uint64_t args[6] = {path, argv, envp, 0, 0, 0};
    if (ck_inject(t, SYS_execve, args, ret) < 0)
        return -1;
    if (*ret == 0) { /* a new program: nothing of the old registers applies */
        t->have_saved = 0;
        t->regs_dirty = 0;
    }
    return 0;
}

int ck_step(struct ck_tracee *t)
{
    if (!t->attached || t->stop == CK_RUNNING || t->stop == CK_STOP_ENTRY || t->regs_dirty) {
        ck_set_why("process %d is not stopped where it can be stepped", t->pid);
        return -1;
    }
    for (int guard = 0; guard < 1000; guard++) {
        if (resume(t, PTRACE_SINGLESTEP, 0) < 0)
            return -1;
        int status, sig;
        if (wait_stop(t, &status) < 0)
            return -1;
        t->stop = classify(t, status, &sig);
        if (t->stop != CK_STOP_SIGNAL)
            continue;
        siginfo_t si;
        if (sig == SIGTRAP && ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si) == 0 && si.si_code > 0)
            return getregs(t, &t->saved); /* the step's own trap: not delivered */
        hold(t, sig);
    }
    ck_set_why("process %d does not finish one instruction", t->pid);
    return -1;
}

/* ------------------------------------------------------------ release */

/* The registers the live process continues with: an interrupted call is
 * restarted as the kernel would have when it left the trap (it does that
 * itself when the registers are put back at the trap, and it is harmless then:
 * rax no longer holds an error). */
static void restart_for_live(struct user_regs_struct *r)
{
    if ((int64_t)r->orig_rax < 0)
        return;
    int64_t rax = (int64_t)r->rax;
    if (rax == -ERESTARTSYS || rax == -ERESTARTNOINTR || rax == -ERESTARTNOHAND) {
        r->rax = r->orig_rax;
        r->rip -= SYSCALL_INSN_LEN;
    } else if (rax == -ERESTART_RESTARTBLOCK) {
        r->rax = NR_RESTART_SYSCALL; /* the kernel's restart block is still the task's */
        r->rip -= SYSCALL_INSN_LEN;
    }
}

/* A tracee left at an injected call's entry stop: skip the call (orig_rax -1). */
static int skip_entered_call(struct ck_tracee *t)
{
    struct user_regs_struct r;
    if (getregs(t, &r) < 0)
        return -1;
    r.orig_rax = (uint64_t)-1;
    if (setregs(t, &r) < 0)
        return -1;
    return run_to(t, CK_STOP_EXIT);
}

static int stop_running(struct ck_tracee *t)
{
    if (ptrace(PTRACE_INTERRUPT, t->pid, 0, 0) < 0) {
        ck_set_why_errno("PTRACE_INTERRUPT %d", t->pid);
        return -1;
    }
    int status, sig;
    if (wait_stop(t, &status) < 0)
        return -1;
    t->stop = classify(t, status, &sig);
    if (t->stop == CK_STOP_SIGNAL)
        hold_or_drop(t, sig);
    return 0;
}

/* The signals held back, sent again (their siginfo is lost: the kernel lets
 * no other process forge one; the program sees them as sent by kill, or by
 * tgkill to the thread that was to get them). */
static void send_held(struct ck_tracee *t)
{
    for (int sig = 1; sig <= CK_NSIG; sig++)
        for (; t->held[sig - 1] > 0; t->held[sig - 1]--)
            if ((t->tgid ? syscall(SYS_tgkill, t->tgid, t->pid, sig) : kill(t->pid, sig)) < 0 &&
                errno != ESRCH)
                ck_warn("could not send signal %d again to process %d: %s", sig, t->pid,
                        strerror(errno));
}

int ck_release(struct ck_tracee *t)
{
    if (!t->attached || t->dead) {
        t->attached = 0;
        return 0;
    }
    int rc = 0;
    if (t->stop == CK_RUNNING)
        rc = stop_running(t);
    if (rc == 0 && t->stop == CK_STOP_ENTRY)
        rc = skip_entered_call(t);
    if (rc == 0 && t->have_saved && t->regs_dirty) {
        struct user_regs_struct r = t->saved;
        if (t->trap_pending) { /* its SIGSYS is still to come: the trap stands */
            r.rip += SYSCALL_INSN_LEN;
            r.orig_rax = r.rax;
        }
        restart_for_live(&r);
        rc = setregs(t, &r);
        if (rc == 0)
            t->regs_dirty = 0;
    }
    if (t->dead)
        return -1;
    if (ptrace(PTRACE_DETACH, t->pid, 0, 0) < 0 && errno != ESRCH) {
        ck_set_why_errno("PTRACE_DETACH %d", t->pid);
        rc = -1;
    }
    t->attached = 0;
    t->stop = CK_RUNNING;
    send_held(t);
    return rc;
}

int ck_kill_copy(struct ck_tracee *t)
{
    if (!t->attached || t->dead) {
        t->attached = 0;
        return 0;
    }
    if (kill(t->pid, SIGKILL) < 0 && errno != ESRCH) {
        ck_set_why_errno("kill %d", t->pid);
        return -1;
    }
    int status;
    while (wait_stop(t, &status) == 0)
        ; /* stops reported before the kill took effect */
    if (!t->dead)
        return -1;
    t->attached = 0;
    return 0;
}

/* ------------------------------------------------------------ text */

static uint64_t find_in(int memfd, uint64_t start, uint64_t end)
{
    size_t len = (size_t)(end - start);
    unsigned char *buf = malloc(len);
    if (!buf)
        return 0;
    uint64_t at = 0;
    if (ck_mem_read(memfd, start, buf, len) == 0)
        for (size_t i = 0; i + 1 < len; i++)
            if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
                at = start + i;
                break;
            }
    free(buf);
    return at;
}

uint64_t ck_find_syscall_insn(int procfd, int memfd)
{
    size_t len;
    char *maps = read_whole_file(procfd, "maps", &len);
    if (!maps)
        return 0;
    uint64_t at = 0;
    /* the vDSO first: it is the same in the copy, and no filter looks at it */
    for (int pass = 0; pass < 2 && !at; pass++) {
        for (char *line = maps; line && *line && !at;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            unsigned long long s, e;
            char perms[5];
            int name_at = 0;
            if (sscanf(line, "%llx-%llx %4s %*s %*s %*s %n", &s, &e, perms, &name_at) >= 3 &&
                perms[2] == 'x' && perms[0] == 'r') {
                int vdso = name_at && strcmp(line + name_at, "[vdso]") == 0;
                if ((pass == 0 && vdso) || (pass == 1 && !vdso && e - s <= (16u << 20)))
                    at = find_in(memfd, s, e);
            }
            if (nl)
                *nl = '\n';
            line = nl ? nl + 1 : NULL;
        }
    }
    free(maps);
    return at;
}

/* ------------------------------------------------------------ registers */

void ck_regs_for_image(const struct user_regs_struct *in, struct mosix_ckpt_regs *out)
{
    struct user_regs_struct r = *in;
    if ((int64_t)r.orig_rax >= 0) {
        if (r.orig_rax == MOSIX_CHECKPOINT_NR) {
            r.rax = 1; /* the program's checkpoint call returns 1: resumed after recovery */
        } else if (is_restart_code((int64_t)r.rax)) {
            r.rax = r.orig_rax; /* issued again, with its original arguments */
            r.rip -= SYSCALL_INSN_LEN;
        }
        r.orig_rax = (uint64_t)-1;
    }
    memcpy(out, &r, sizeof(*out));
}
