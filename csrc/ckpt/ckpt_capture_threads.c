/* ckpt_capture_threads.c - the threads besides the main one, and pending signals.
 *
 * Kernel facts this relies on:
 * - Every thread is a task of its own: ptrace seizes and interrupts each by
 *   its thread id; a thread created meanwhile by one not yet stopped shows up
 *   in /proc/PID/task on the next pass, one that ends is left out.
 * - fork (the frozen copy is one) copies only the calling thread: the others'
 *   registers, XSAVE area, blocked mask, alternate stack, robust list and rseq
 *   registration are read from each while it is stopped (the altstack by a
 *   sigaltstack injected into it).
 * - Pending signals are read with PTRACE_PEEKSIGINFO (the thread's own queue,
 *   and with PTRACE_PEEKSIGINFO_SHARED the process's) before anything is
 *   injected: an injected call lets an unblocked signal be dequeued.  The
 *   SIGSYS of a call a seccomp filter had just trapped is left out (the call
 *   is issued again, ckpt_capture_trace.c); so are SIGKILL and SIGSTOP.
 * - A thread's clear-child-tid address is read with an injected
 *   prctl(PR_GET_TID_ADDRESS); glibc's copy of its id (struct pthread's tid,
 *   which the restorer's clone must set) is found in memory: the offset from
 *   fs_base at which every thread's control block holds its own id. */
#include "ckpt_capture_common.h"
#include "mosix_shim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GLIBC_TID_OFFSET 0x2d0 /* glibc 2.36 x86-64 offsetof(struct pthread, tid): tried first */
#define PEEK_BATCH 32
#define STOP_PASSES 1000
#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

/* ------------------------------------------------------------ stopping */

static int known(const struct ck_threads *ts, pid_t tid, pid_t pid)
{
    if (tid == pid)
        return 1;
    for (int i = 0; i < ts->n; i++)
        if (ts->th[i].t.pid == tid)
            return 1;
    return 0;
}

static int task_exists(int procfd, pid_t tid)
{
    char path[32];
    snprintf(path, sizeof(path), "task/%d", (int)tid);
    return faccessat(procfd, path, F_OK, 0) == 0;
}

/* One thread seized and stopped: 1, or 0 when it ended first. */
static int stop_one(struct ck_threads *ts, pid_t pid, pid_t tid, int procfd, uint64_t syscall_at)
{
    if (ts->n >= MOSIX_CKPT_MAX_THREADS - 1)
        ck_refuse("more than %d threads", MOSIX_CKPT_MAX_THREADS);
    struct ck_thread *th = &ts->th[ts->n];
    if (ck_seize(&th->t, tid) < 0) {
        if (!task_exists(procfd, tid))
            return 0;
        ck_fail("%s", ck_why);
    }
    th->t.tgid = pid;
    ts->n++; /* attached: released by cleanup from here on */
    if (ck_interrupt(&th->t) < 0) {
        if (th->t.dead || !task_exists(procfd, tid)) {
            ts->n--;
            return 0;
        }
        ck_fail("%s", ck_why);
    }
    th->t.syscall_at = syscall_at;
    return 1;
}

/* The entries of /proc/PID/task not stopped yet, stopped: how many. */
static int stop_pass(struct ck_threads *ts, pid_t pid, int procfd, uint64_t syscall_at)
{
    int fd = openat(procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        ck_fail_errno("/proc/%d/task", (int)pid);
    DIR *d = fdopendir(fd);
    if (!d)
        ck_fail_errno("/proc/%d/task", (int)pid);
    int added = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t v;
        if (e->d_name[0] == '.' || ck_parse_u64(e->d_name, 10, &v) < 0 || v == 0 ||
            v > 0x7fffffff)
            continue;
        pid_t tid = (pid_t)v;
        if (!known(ts, tid, pid))
            added += stop_one(ts, pid, tid, procfd, syscall_at);
        errno = 0;
    }
    if (errno)
        ck_fail_errno("/proc/%d/task", (int)pid);
    if (closedir(d) < 0)
        ck_fail_errno("/proc/%d/task", (int)pid);
    return added;
}

void ck_threads_stop(struct ck_threads *ts, pid_t pid, int procfd, uint64_t syscall_at)
{
    for (int pass = 0; pass < STOP_PASSES; pass++)
        if (stop_pass(ts, pid, procfd, syscall_at) == 0)
            return;
    ck_fail("process %d: its threads keep appearing", (int)pid);
}

/* ------------------------------------------------------------ pending signals */

static void keep_signal(struct ck_threads *ts, uint32_t tid, const siginfo_t *si)
{
    if (si->si_signo == SIGKILL || si->si_signo == SIGSTOP)
        return;
    if (ts->nsig >= MOSIX_CKPT_MAX_SIGNALS)
        ck_refuse("more than %d pending signals", MOSIX_CKPT_MAX_SIGNALS);
    struct mosix_ckpt_signal *s = &ts->sig[ts->nsig++];
    memset(s, 0, sizeof(*s));
    s->tid = tid;
    _Static_assert(sizeof(siginfo_t) == MOSIX_CKPT_SIGINFO_SIZE, "siginfo size");
    memcpy(s->info, si, sizeof(*si));
}

/* The signals pending in t's queue (shared: the process's), recorded for tid. */
static void peek(struct ck_threads *ts, const struct ck_tracee *t, uint32_t tid, int shared)
{
    siginfo_t si[PEEK_BATCH];
    struct __ptrace_peeksiginfo_args want = {
        .off = 0, .flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0, .nr = PEEK_BATCH};
    int trap_left = !shared && t->trap_pending; /* its SIGSYS is dropped: the call comes again */
    for (;;) {
        long n = ptrace(PTRACE_PEEKSIGINFO, t->pid, &want, si);
        if (n < 0)
            ck_fail_errno("PTRACE_PEEKSIGINFO %d", t->pid);
        for (long i = 0; i < n; i++) {
            if (trap_left && si[i].si_signo == SIGSYS && si[i].si_code == SYS_SECCOMP) {
                trap_left = 0;
                continue;
            }
            keep_signal(ts, tid, &si[i]);
        }
        if (n < (long)want.nr)
            return;
        want.off += (uint64_t)n;
    }
}

/* ------------------------------------------------------------ state */

static void read_thread(struct ck_threads *ts, struct ck_thread *th, int procfd, int memfd)
{
    struct ck_tracee *t = &th->t;
    struct mosix_ckpt_thread *rec = &th->rec;
    ck_vdso_settle(t, procfd, memfd);
    memset(rec, 0, sizeof(*rec));
    rec->tid = (uint32_t)t->pid;
    if (ptrace(PTRACE_GETSIGMASK, t->pid, (void *)sizeof(rec->sigmask), &rec->sigmask) < 0)
        ck_fail_errno("PTRACE_GETSIGMASK %d", t->pid);
    void *head = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, t->pid, &head, &len) < 0)
        ck_fail_errno("get_robust_list %d", t->pid);
    rec->robust_list = (uint64_t)(uintptr_t)head;
    rec->robust_len = len;
    ck_read_rseq(t->pid, &rec->rseq_addr, &rec->rseq_len, &rec->rseq_flags, &rec->rseq_sig);
    th->xstate = ck_alloc(MOSIX_CKPT_MAX_XSAVE);
    ts->xsave_size = ck_read_xstate(t->pid, th->xstate); /* before a call is injected */
    ck_read_altstack(t, procfd, memfd, &rec->altstack_sp, &rec->altstack_size,
                     &rec->altstack_flags);
    th->clear_tid_known = ck_read_clear_tid(t, procfd, memfd, &rec->clear_tid);
}

void ck_threads_read(struct ck_threads *ts, struct ck_tracee *main, int procfd, int memfd)
{
    peek(ts, main, (uint32_t)main->pid, 0);
    peek(ts, main, 0, 1);
    for (int i = 0; i < ts->n; i++)
        peek(ts, &ts->th[i].t, (uint32_t)ts->th[i].t.pid, 0);
    for (int i = 0; i < ts->n; i++)
        read_thread(ts, &ts->th[i], procfd, memfd);
}

int ck_threads_release(struct ck_threads *ts)
{
    int rc = 0;
    for (int i = 0; i < ts->n; i++)
        if (ck_release(&ts->th[i].t) < 0 && !ts->th[i].t.dead) {
            ck_warn("thread %d: %s", ts->th[i].t.pid, ck_why);
            rc = -1;
        }
    return rc;
}

/* Each stopped thread makes exit(0) (the main one stays, stopped): the
 * process has one thread left, which can execute the deputy (an execve would
 * kill traced threads and wait until their tracer reaps them).  A thread that
 * ended by itself meanwhile counts as ended.  0 or -1 (ck_why). */
int ck_threads_end(struct ck_threads *ts)
{
    const uint64_t args[6] = {0, 0, 0, 0, 0, 0};
    for (int i = 0; i < ts->n; i++) {
        struct ck_tracee *t = &ts->th[i].t;
        if (t->dead)
            continue;
        int64_t ret = 0;
        if (ck_inject(t, SYS_exit, args, &ret) == 0) { /* exit came back: it did not end */
            ck_set_why("thread %d: exit returned %lld", t->pid, (long long)ret);
            return -1;
        }
        if (!t->dead)
            return -1; /* ck_why */
    }
    return 0;
}

/* ------------------------------------------------------------ glibc's tid */

/* Up to MAX_TCB_TID_OFFSET bytes from fs_base (its mapping may end sooner). */
static size_t tcb_bytes(int memfd, uint64_t fs_base, unsigned char *buf)
{
    size_t got = 0;
    while (got < MOSIX_CKPT_MAX_TCB_TID_OFFSET) {
        ssize_t n = pread(memfd, buf + got, MOSIX_CKPT_MAX_TCB_TID_OFFSET - got,
                          (off_t)(fs_base + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* A recovered process's thread id map (mosix_shim.h), if it has one: its
 * threads' control blocks hold the ids of the image it was recovered from. */
static int read_tid_map(int memfd, struct mosix_tid_map *m)
{
    ssize_t n;
    do
        n = pread(memfd, m, sizeof(*m), (off_t)MOSIX_TID_MAP_ADDR);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(*m) && m->magic == MOSIX_TID_MAP_MAGIC && m->n >= 1 &&
           m->n <= MOSIX_TID_MAP_MAX;
}

/* The id the program knows the thread with kernel id ``tid`` by. */
static uint32_t program_tid(const struct mosix_tid_map *m, uint32_t tid)
{
    for (uint32_t i = 0; m && i < m->n; i++)
        if ((uint32_t)m->kernel[i] == tid)
            return (uint32_t)m->program[i];
    return tid;
}

#define PID_MAX_LIMIT 4194304 /* the kernel's ceiling for pid_max */

/* Does every thread's control block hold its own id (or, recovered, the id the
 * program knows it by) at off?  The main thread's may hold another id instead:
 * a copy away keeps its home pid there (the restorer leaves the main thread's
 * as the image has it). */
static int holds_ids_at(const struct ck_threads *ts, uint32_t off, pid_t pid,
                        unsigned char *const *tcb, const size_t *len,
                        const struct mosix_tid_map *m)
{
    for (int i = 0; i <= ts->n; i++) {
        uint32_t want = i == 0 ? (uint32_t)pid : ts->th[i - 1].rec.tid, have;
        if (!tcb[i] || off + 4 > len[i])
            return 0;
        memcpy(&have, tcb[i] + off, 4);
        if (i == 0 && ts->n && have != want && have > 0 && have <= PID_MAX_LIMIT)
            continue; /* a pid: its home's, if the others agree */
        if (have != want && have != program_tid(m, want))
            return 0;
    }
    return 1;
}

void ck_threads_find_tid(struct ck_threads *ts, pid_t pid, uint64_t main_fs, int memfd)
{
    unsigned char **tcb = calloc((size_t)ts->n + 1, sizeof(*tcb));
    size_t *len = calloc((size_t)ts->n + 1, sizeof(*len));
    if (!tcb || !len)
        ck_fail("out of memory");
    ts->tcb_tid_offset = 0;
    int usable = 1;
    for (int i = 0; i <= ts->n && usable; i++) {
        uint64_t fs = i == 0 ? main_fs : ts->th[i - 1].t.saved.fs_base;
        if (!fs) {
            usable = 0;
            break;
        }
        tcb[i] = ck_alloc(MOSIX_CKPT_MAX_TCB_TID_OFFSET);
        len[i] = tcb_bytes(memfd, fs, tcb[i]);
    }
    struct mosix_tid_map *map = ck_alloc(sizeof(*map));
    if (!read_tid_map(memfd, map)) {
        free(map);
        map = NULL;
    }
    if (usable && holds_ids_at(ts, GLIBC_TID_OFFSET, pid, tcb, len, map))
        ts->tcb_tid_offset = GLIBC_TID_OFFSET;
    for (uint32_t off = 8; usable && !ts->tcb_tid_offset && off < MOSIX_CKPT_MAX_TCB_TID_OFFSET;
         off += 4)
        if (holds_ids_at(ts, off, pid, tcb, len, map))
            ts->tcb_tid_offset = off;
    free(map);
    for (int i = 0; i <= ts->n; i++)
        free(tcb[i]);
    free(tcb);
    free(len);
}

/* ------------------------------------------------------------ records */

void ck_threads_write(struct ck_image *im, struct ck_threads *ts, int copyfd, int copymem)
{
    for (int i = 0; i < ts->n; i++) {
        struct ck_thread *th = &ts->th[i];
        struct mosix_ckpt_regs regs;
        ck_regs_for_image(&th->t.saved, &regs);
        ck_vdso_regs(&regs, copyfd, copymem);
        _Static_assert(sizeof(th->rec.regs) == sizeof(regs), "THREAD regs");
        memcpy(th->rec.regs, &regs, sizeof(regs));
        th->rec.tid_addr =
            regs.fs_base && ts->tcb_tid_offset ? regs.fs_base + ts->tcb_tid_offset : 0;
        if (!th->clear_tid_known) /* what glibc's pthread_create gives it */
            th->rec.clear_tid = th->rec.tid_addr;
        struct iovec parts[2] = {{.iov_base = &th->rec, .iov_len = sizeof(th->rec)},
                                 {.iov_base = th->xstate, .iov_len = ts->xsave_size}};
        ck_image_record(im, MOSIX_CKPT_KIND_THREAD, parts, 2);
    }
    for (int i = 0; i < ts->nsig; i++) {
        struct iovec part = {.iov_base = &ts->sig[i], .iov_len = sizeof(ts->sig[i])};
        ck_image_record(im, MOSIX_CKPT_KIND_SIGNAL, &part, 1);
    }
}
