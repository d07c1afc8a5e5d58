/* restore_timers.c - POSIX timers made again with their ids.
 *
 * The program holds its timers' ids (timer_t), so each is made with the id
 * it had: with PR_TIMER_CREATE_RESTORE_IDS on (Linux 6.16), timer_create
 * takes the id to use from *created_timer_id.  A timer that named a thread
 * (SIGEV_THREAD_ID, as glibc's SIGEV_THREAD timers do) names its new id.
 * Each is armed with the time it had left (relative) and its interval; every
 * thread still blocks every signal, so an expiry waits for the program. */
#include "restore.h"

#include <asm/errno.h>

#define PR_TIMER_CREATE_RESTORE_IDS 77
#define RESTORE_IDS_OFF 0
#define RESTORE_IDS_ON 1
#define NOTIFY_THREAD_ID 4

/* The kernel's struct sigevent (64 bytes). */
struct kernel_sigevent {
    uint64_t value;
    int32_t signo;
    int32_t notify;
    int32_t tid;
    int32_t pad[11];
};
_Static_assert(sizeof(struct kernel_sigevent) == 64, "struct sigevent");

static void make_timer(const struct image *img, const struct mosix_ckpt_timer *t)
{
    struct kernel_sigevent ev = {.value = t->value, .signo = t->signo, .notify = t->notify};
    if (t->notify & NOTIFY_THREAD_ID) {
        long tid = threads_new_tid(img, t->tid);
        if (tid < 0)
            state_failed("cannot find a timer's thread", tid);
        ev.tid = (int32_t)tid;
    }
    int32_t id = t->id; /* the id to take (restore mode) */
    long rc = mosix_raw3(__NR_timer_create, t->clockid, &ev, &id);
    if (rc < 0)
        state_failed("cannot make a POSIX timer again", rc);
    if (id != t->id)
        state_failed("cannot make a POSIX timer again with its id", -EEXIST);
    if (t->remaining[0] == 0 && t->remaining[1] == 0)
        return; /* disarmed, as made */
    const int64_t spec[4] = {t->interval[0], t->interval[1], t->remaining[0], t->remaining[1]};
    rc = mosix_raw4(__NR_timer_settime, id, 0, spec, 0);
    if (rc < 0)
        state_failed("cannot arm a POSIX timer", rc);
}

void timers_restore(const struct image *img)
{
    if (img->ntimers == 0)
        return;
    long rc = mosix_raw6(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0, 0);
    if (rc < 0)
        state_failed("this kernel cannot make POSIX timers again with their ids "
                     "(PR_TIMER_CREATE_RESTORE_IDS)",
                     rc);
    for (uint32_t i = 0; i < img->ntimers; i++)
        make_timer(img, &img->timers[i]);
    rc = mosix_raw6(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0, 0);
    if (rc < 0)
        state_failed("cannot end the timers' restore mode", rc);
}
