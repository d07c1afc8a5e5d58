/* shim_tids.c - the calls naming a thread id, after a recovery or a move.
 *
 * A recovered or moved process's threads keep the ids of the image in their control
 * blocks (what glibc passes to the kernel, and what the mutexes they hold
 * record), while the kernel knows them by new ones.  The restorer
 * (csrc/restore/restore_tids.c) wrote which is which in the map at
 * MOSIX_TID_MAP_ADDR and installed a filter that traps, from libc's text, the
 * calls naming one of the image's ids, and gettid, rt_sigprocmask and
 * timer_create.  Here each is made as the program meant it:
 *
 *   - an id argument of the image's is replaced by the kernel's (and the
 *     image's process id in a tgid argument by the process's: the map's
 *     main thread, away its home pid, which the forwarded calls name it by);
 *   - gettid returns the id the program knows the calling thread by (the
 *     main thread's is the process id, as getpid says);
 *   - rt_sigprocmask is done on the mask the handler returns to, SIGSYS never
 *     blocked: glibc blocks every signal around tgkill (pthread_kill) and a
 *     trap with SIGSYS blocked would kill the process;
 *   - timer_create's SIGEV_THREAD_ID target is translated in a copy.
 *
 * Without the map (after an exec), or with an id it does not know, the call
 * is made as it was.  Away, the calls made from here go to the supervisor or
 * run there as the forward filter says (it traps none of them: a call it
 * sends home traps with its own magic, which wins over this one).  Raw system calls only (a
 * signal handler); the calls made from here are not trapped (not libc's text). */
#include "shim_tids.h"

#include <errno.h>
#include <linux/audit.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "mosix_shim.h"
#include "raw_syscall.h"
#include "seccomp_table.h"

#define SIGEV_THREAD_ID_BIT 4
#define SIGEVENT_TID_OFFSET 16 /* struct sigevent: value, signo, notify, then the tid */
#define SIGEVENT_SIZE 64
#define UNBLOCKABLE ((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)) | (1ull << (SIGSYS - 1)))

static const struct mosix_tid_map *the_map(void)
{
    unsigned char resident[MOSIX_TID_MAP_PAGES];
    if (mosix_raw3(SYS_mincore, MOSIX_TID_MAP_ADDR, MOSIX_TID_MAP_PAGES * 4096, resident) != 0)
        return 0; /* not mapped: no map here */
    const struct mosix_tid_map *m = (const struct mosix_tid_map *)MOSIX_TID_MAP_ADDR;
    if (m->magic != MOSIX_TID_MAP_MAGIC || m->n == 0 || m->n > MOSIX_TID_MAP_MAX)
        return 0;
    return m;
}

/* The kernel's id of the thread the program knows as ``id`` (itself if none). */
static long kernel_tid(const struct mosix_tid_map *m, long id)
{
    for (uint32_t i = 0; m && i < m->n; i++)
        if (m->program[i] == (int32_t)id)
            return m->kernel[i];
    return id;
}

static long program_gettid(const struct mosix_tid_map *m)
{
    long tid = mosix_raw0(SYS_gettid);
    for (uint32_t i = 1; m && i < m->n; i++) /* the main thread's stays getpid's */
        if (m->kernel[i] == (int32_t)tid)
            return m->program[i];
    return tid;
}

static long sigprocmask_here(ucontext_t *uc, long how, long set, long old, long size)
{
    if (size != 8)
        return -EINVAL;
    uint64_t mask, now;
    __builtin_memcpy(&mask, &uc->uc_sigmask, sizeof(mask));
    now = mask;
    if (set) {
        uint64_t s = *(const volatile uint64_t *)set;
        if (how == SIG_BLOCK)
            now = mask | s;
        else if (how == SIG_UNBLOCK)
            now = mask & ~s;
        else if (how == SIG_SETMASK)
            now = s;
        else
            return -EINVAL;
    }
    if (old)
        *(volatile uint64_t *)old = mask;
    now &= ~UNBLOCKABLE;
    __builtin_memcpy(&uc->uc_sigmask, &now, sizeof(now));
    return 0;
}

void shim_tids_call(ucontext_t *uc, long nr)
{
    greg_t *g = uc->uc_mcontext.gregs;
    long a[6] = {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]};
    const struct mosix_tid_map *m = the_map();
    long ret;
    if (nr == SYS_gettid) {
        ret = program_gettid(m);
    } else if (nr == SYS_rt_sigprocmask) {
        ret = sigprocmask_here(uc, a[0], a[1], a[2], a[3]);
    } else if (nr == SYS_timer_create && a[1]) {
        unsigned char event[SIGEVENT_SIZE];
        __builtin_memcpy(event, (const void *)a[1], sizeof(event));
        int32_t notify, tid;
        __builtin_memcpy(&notify, event + 12, sizeof(notify));
        __builtin_memcpy(&tid, event + SIGEVENT_TID_OFFSET, sizeof(tid));
        if (notify & SIGEV_THREAD_ID_BIT) {
            tid = (int32_t)kernel_tid(m, tid);
            __builtin_memcpy(event + SIGEVENT_TID_OFFSET, &tid, sizeof(tid));
            a[1] = (long)event;
        }
        ret = mosix_raw6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    } else {
        struct seccomp_data sd = {.nr = (int)nr, .arch = AUDIT_ARCH_X86_64,
                                  .instruction_pointer = (uint64_t)g[REG_RIP]};
        for (int i = 0; i < 6; i++)
            sd.args[i] = (uint64_t)a[i];
        unsigned c = mosix_classify(&sd); /* this trap hid the shim's own (SIGSTOP) */
        if (MOSIX_OUTCOME(c) == MOSIX_OUTCOME_STOP_TO_TSTP)
            a[MOSIX_OUTCOME_ARG(c)] = SIGTSTP;
        for (size_t i = 0; i < sizeof(mosix_tid_calls) / sizeof(mosix_tid_calls[0]); i++) {
            const struct mosix_tid_call *t = &mosix_tid_calls[i];
            if (t->nr != nr || (t->which != MOSIX_TID_NONE && a[0] != t->which))
                continue; /* another call, or its argument is a group or a user */
            if (t->tgid != MOSIX_TID_NONE && m && a[t->tgid] == m->program[0])
                a[t->tgid] = m->kernel[0];
            a[t->tid] = kernel_tid(m, (int32_t)a[t->tid]);
        }
        ret = mosix_raw6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    g[REG_RAX] = (greg_t)ret;
}
