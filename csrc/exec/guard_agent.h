/* guard_agent.h - the guard's side of MOSIX's checkpoint call.
 *
 * A process calls syscall(MOSIX_CHECKPOINT_NR, op, arg) (mosix_checkpoint.h);
 * the base filter hands it to the guard, which asks the node agent and answers
 * when the agent replies, never blocking meanwhile:
 *
 *   op 1 CHECKPOINT      {"op":"checkpoint","pid":P,"action":"checkpoint",
 *                         "origin":"program"}: 0 on "checkpointed" with an empty
 *                         "failed", else -1/ECANCELED
 *   op 2 SET_FILE        arg: a NUL-terminated path in the process (relative
 *                         to its cwd, made absolute here) -> "file"
 *   op 3 SET_LIMIT       arg: n >= 0 -> "limit"
 *   op 4 SET_INTERVAL    arg: minutes >= 0 -> "interval"
 *                        {"op":"checkpoint-settings","pid":P,KEY:VALUE}: 0 on
 *                         "done", else -1/ECANCELED
 *
 * The path goes to the agent as a CBOR byte string: any bytes but NUL.
 * Other errors: EINVAL (unknown op, bad value, empty path),
 * ENAMETOOLONG (path of 4096 bytes or more), EFAULT (unreadable path),
 * EPERM (the guard may not read the process's memory: Yama ptrace_scope >= 1
 * unless the process named the guard with PR_SET_PTRACER),
 * ECANCELED (no agent socket, agent unreachable, refused, or an odd reply),
 * EAGAIN (too many requests in flight).
 *
 * While the capturer ptrace-interrupts the process, the kernel drops its
 * pending notification and the process re-issues the call afterwards: the
 * request is kept per task, a re-issued call (same op and argument) joins the
 * request in flight, and the agent's answer goes to the newest valid
 * notification, or waits a few seconds for the re-issued one. */
#ifndef MOSIX_GUARD_AGENT_H
#define MOSIX_GUARD_AGENT_H

#include "mosix_names.h"

#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/types.h>

#define GUARD_AGENT_MAX 64          /* requests in flight at once */
#define GUARD_AGENT_SOCKET_ENV MOSIX_AGENT_SOCKET_ENV

enum mosix_checkpoint_op {
    MOSIX_CKPT_OP_CHECKPOINT = 1,
    MOSIX_CKPT_OP_SET_FILE = 2,
    MOSIX_CKPT_OP_SET_LIMIT = 3,
    MOSIX_CKPT_OP_SET_INTERVAL = 4,
};

/* Keep the agent's socket path (the launcher's MOSIX_AGENT_SOCKET; NULL if
 * none) before the guard blanks its environment. */
void guard_agent_init(const char *socket_path);

/* Announce the guard to the node agent (GuardHello in mosix/protocol.py:
 * {"op":"guard-hello","root":ROOT,"mode":"u"|"e"|"w"}, the listener attached as
 * SCM_RIGHTS) and wait for its answer, at most GUARD_AGENT_HELLO_MS.  Returns 1
 * when the agent replied "done" (it watches the guard and kills the tree's -u
 * processes if the guard dies), 0 otherwise (no agent, refused, too slow:
 * nothing changes). */
#define GUARD_AGENT_HELLO_MS 2000
int guard_agent_hello(int listener, pid_t root, char mode);

/* A notification of the checkpoint call.  Returns 1 with ``resp`` filled in
 * (answer it now), or 0: the guard answers it later (guard_agent_events). */
int guard_agent_call(int listener, const struct seccomp_notif *req,
                     struct seccomp_notif_resp *resp);

/* The descriptors of the requests in flight, into ``fds`` (room for
 * GUARD_AGENT_MAX).  Returns how many. */
size_t guard_agent_pollfds(struct pollfd *fds);

/* Progress the requests whose descriptors poll reported in ``fds``. */
void guard_agent_events(int listener, const struct pollfd *fds, size_t n);

/* Forget answers no re-issued call came for in time; returns poll's timeout
 * until the next such deadline (-1: none). */
int guard_agent_expire(void);

#endif
