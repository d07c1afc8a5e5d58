/* remote_restart.h - the copy's notifications the supervisor has received and
 * not answered yet, and how one of them is made again (remote_restart.c).
 *
 * The forward filter has SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: once the
 * supervisor has received a notification, the copy's thread waits for the
 * answer killable.  A reply NOTIF_SEND accepts is then always delivered (the
 * copy's own signal can no longer end the wait in between and drop it), and
 * neither a signal nor a capture's PTRACE_INTERRUPT ends that wait.  So a call
 * that must be made again (the process leaves with it unanswered; a signal
 * from home interrupted it at home) is answered with a restart code while
 * the thread has something to take on its way out: the supervisor seizes the
 * thread, interrupts it (a trap pending, the wait not woken), answers, and
 * lets it go at its trap; the kernel then restarts the call, or runs the
 * pending signal's handler first and restarts it or fails it with EINTR, as
 * the code says.  (Answered without, a restart code would reach the program
 * as an error of its own.) */
#ifndef MOSIX_REMOTE_RESTART_H
#define MOSIX_REMOTE_RESTART_H

#include <stdint.h>
#include <sys/types.h>

/* Notification id of thread tid was received. */
void waiting_add(uint64_t id, pid_t tid);
/* It was answered (or its thread is gone). */
void waiting_remove(uint64_t id);
/* The thread of notification id, 0 if not waiting. */
pid_t waiting_tid(uint64_t id);
/* Notifications waiting. */
size_t waiting_count(void);
/* The i-th (0 <= i < waiting_count()). */
uint64_t waiting_id(size_t i);

/* Answer notification id of thread tid with -code (a restart code), the
 * thread seized and interrupted so that the kernel acts on it, then let go.
 * 1: done (or the thread was gone); 0: thread tid ended meanwhile, its wait
 * status in *status (consumed here: for the copy's main thread, its end);
 * -1: errno says why ptrace or the answer failed. */
int rr_restart(int listener, uint64_t id, pid_t tid, long code, int *status);

#endif
