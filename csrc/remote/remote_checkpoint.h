/* remote_checkpoint.h - the copy's own checkpoint call, away from home (remote_checkpoint.c).
 *
 * A process asks for its checkpoint with syscall(MOSIX_CHECKPOINT_NR, op, arg)
 * (mosix_checkpoint.h; the preload shim's /proc/self/checkpoint files make the
 * same call).  At home the guard asks the node agent; away the call comes to
 * mosix-remote, which asks its agent with one line,
 *   "checkpoint OP ARG"   OP 1 (take one now), 3 (-N), 4 (-A): ARG decimal;
 *                         OP 2 (-C): ARG the file name in hex, as the process
 *                         wrote it (home makes it absolute with its cwd)
 * and its agent asks the process's home, which serves it as `migrate PID
 * checkpoint` (the copy captured here, the image written at home).  Home's
 * answer comes back as "answer RESULT" (0, or a negative errno).
 *
 * The capture interrupts the call (the kernel drops its notification and the
 * copy makes it again when let go), so, as the guard does, a call made again
 * with the same op and argument joins the request in flight, and an answer
 * that finds no call waiting is kept a few seconds for the call made again.
 * One request at a time per copy (a copy is one thread): another while one is
 * in flight gets EAGAIN. */
#ifndef MOSIX_REMOTE_CHECKPOINT_H
#define MOSIX_REMOTE_CHECKPOINT_H

#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>

#define RC_LINE_MAX (2 * 4096 + 64) /* "checkpoint 2 " and a file name in hex */

enum rc_step {
    RC_ANSWER, /* answer the call now with *result */
    RC_ASK,    /* tell the agent the line written; the answer comes later */
    RC_WAIT,   /* it joined the request in flight: nothing to do now */
};

/* Whether system call ``nr`` is MOSIX's checkpoint call. */
int rc_is_checkpoint_call(long nr);

/* A checkpoint call (notification n of the copy).  Fills ``line`` (cap >=
 * RC_LINE_MAX, without the newline) for RC_ASK, ``*result`` for RC_ANSWER. */
enum rc_step rc_call(const struct seccomp_notif *n, char *line, size_t cap, long *result);

/* The agent's answer (the text after "answer ").  Returns 1 with the
 * notification to answer in ``*id`` and ``*result``; 0 when no call waits
 * (the result is kept for the call made again) or none was asked. */
int rc_answer(const char *text, uint64_t *id, long *result);

/* The notification of rc_answer was gone (interrupted): keep ``result`` for
 * the call made again. */
void rc_keep(long result);

#endif
