/* ckpt_capture_timers.c - POSIX timers (timer_create), the TIMER records.
 *
 * Kernel facts this relies on:
 * - fork does not copy POSIX timers: they are read from the process while it
 *   is stopped.  /proc/PID/timers lists each ("ID:", "signal: SIGNO/VALUE",
 *   "notify: signal|none|thread/pid|tid.N", "ClockID:"); timer_gettime,
 *   injected into the main thread, gives its interval and remaining time.
 * - The kernel's notify is the sigev_notify it was given: SIGEV_SIGNAL 0,
 *   SIGEV_NONE 1, plus SIGEV_THREAD_ID 4 when it names a thread ("tid"); glibc
 *   turns SIGEV_THREAD into a SIGEV_THREAD_ID timer of a helper thread. */
#include "ckpt_capture_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOTIFY_THREAD_ID 4

static const struct {
    const char *word;
    int32_t notify;
} kinds[] = {{"signal", 0}, {"none", 1}, {"thread", 2}};

/* One entry's four lines, from at: the next entry's start, or NULL at the end. */
static char *parse_entry(char *at, struct mosix_ckpt_timer *t)
{
    int id, signo, clockid, n = 0;
    unsigned long long value;
    char kind[16], target[8];
    unsigned long who;
    memset(t, 0, sizeof(*t));
    if (sscanf(at, "ID: %d\nsignal: %d/%llx\nnotify: %15[a-z]/%7[a-z].%lu\nClockID: %d\n%n", &id,
               &signo, &value, kind, target, &who, &clockid, &n) != 7 ||
        n == 0)
        ck_fail("/proc/PID/timers: cannot parse");
    t->id = id;
    t->signo = signo;
    t->value = value;
    t->clockid = clockid;
    t->notify = -1;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        if (strcmp(kind, kinds[k].word) == 0)
            t->notify = kinds[k].notify;
    if (t->notify < 0)
        ck_fail("/proc/PID/timers: unknown notification '%s'", kind);
    if (strcmp(target, "tid") == 0) {
        t->notify |= NOTIFY_THREAD_ID;
        t->tid = (uint32_t)who;
    } else if (strcmp(target, "pid") != 0) {
        ck_fail("/proc/PID/timers: unknown target '%s'", target);
    }
    return at[n] ? at + n : NULL;
}

static int by_id(const void *a, const void *b)
{
    int32_t x = ((const struct mosix_ckpt_timer *)a)->id, y = ((const struct mosix_ckpt_timer *)b)->id;
    return (x > y) - (x < y);
}

void ck_timers_read(struct ck_timers *ts, struct ck_tracee *main, int procfd, int memfd)
{
    size_t len;
    ts->n = 0;
    char *text = read_whole_file(procfd, "timers", &len);
    if (!text)
        ck_fail_errno("/proc/PID/timers");
    for (char *at = len ? text : NULL; at;) {
        if (ts->n == MOSIX_CKPT_MAX_TIMERS)
            ck_refuse("more than %d POSIX timers", MOSIX_CKPT_MAX_TIMERS);
        struct mosix_ckpt_timer *t = &ts->t[ts->n];
        at = parse_entry(at, t);
        int64_t spec[4];
        int64_t ret = ck_read_timer(main, procfd, memfd, t->id, spec);
        if (ret == -EINVAL)
            continue; /* deleted meanwhile by a thread not stopped yet: not there */
        if (ret < 0) {
            errno = (int)-ret;
            ck_fail_errno("timer_gettime %d in process %d", t->id, main->pid);
        }
        memcpy(t->interval, spec, sizeof(t->interval));
        memcpy(t->remaining, spec + 2, sizeof(t->remaining));
        ts->n++;
    }
    free(text);
    qsort(ts->t, (size_t)ts->n, sizeof(ts->t[0]), by_id);
}

void ck_timers_write(struct ck_image *im, const struct ck_timers *ts)
{
    for (int i = 0; i < ts->n; i++) {
        struct iovec part = {.iov_base = (void *)&ts->t[i], .iov_len = sizeof(ts->t[i])};
        ck_image_record(im, MOSIX_CKPT_KIND_TIMER, &part, 1);
    }
}
