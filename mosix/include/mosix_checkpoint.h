/* mosix_checkpoint.h - a program under mosrun asks for its own checkpoint.
 *
 * Part of user-space MOSIX (GPL-2.0-or-later).  Header only: nothing to link,
 * and it works in static programs too (it uses syscall(2) and nothing else).
 *
 *   #include <mosix_checkpoint.h>
 *
 *   cc -I"$(python3 -c 'from mosix.ckpt import trigger; print(trigger.include_dir())')" ...
 *
 * (Python programs: mosix.ckpt.trigger has the same calls.)
 *
 *   int mosix_checkpoint(void);
 *       Take a checkpoint now, as `migrate PID checkpoint` would: the node
 *       agent writes the process's image to the next checkpoint file (mosrun
 *       -C, default ckpt.PID.1, ckpt.PID.2 ... in the working directory).
 *       Returns
 *         MOSIX_CHECKPOINT_DONE (0)     the checkpoint was written; going on
 *         MOSIX_CHECKPOINT_RESUMED (1)  this process was recovered from that
 *                                       checkpoint (mosrun -R) and goes on
 *                                       from here
 *         -1 with errno                 ECANCELED: not taken (the agent
 *                                       refused or failed, e.g. open pipes or
 *                                       sockets, or there is no agent);
 *                                       ENOSYS: not running under mosrun
 *
 *   int mosix_checkpoint_file(const char *name);
 *       Future checkpoints go to NAME.1, NAME.2 ... (or NAME.N, N+1 ... when
 *       NAME ends in a number), as mosrun -C.  A relative NAME is taken from
 *       the current working directory.
 *   int mosix_checkpoint_limit(int max);
 *       Recycle the file numbers after MAX checkpoints, as mosrun -N (0:
 *       unlimited).
 *   int mosix_checkpoint_interval(int minutes);
 *       Take a checkpoint every MINUTES minutes, as mosrun -A (0: never).
 *       These return 0, or -1 with errno: EINVAL (a negative value, an empty
 *       or non-UTF-8 name), ENAMETOOLONG (4096 bytes or more with the
 *       directory), EFAULT (an unreadable name), ECANCELED (no agent, or the
 *       agent refused), EAGAIN (too many requests at once in the process
 *       tree), ENOSYS (not under mosrun).
 *
 * MOSIX's files do the same from any language, in dynamically linked
 * programs: write a positive number to /proc/self/checkpoint, a name to
 * /proc/self/checkpointfile, a number to /proc/self/checkpointlimit or
 * /proc/self/checkpointinterval; the request is made when the file is closed,
 * and close() (fclose()) fails with the errno above.
 *
 * Typical use:
 *
 *   int r = mosix_checkpoint();
 *   if (r == MOSIX_CHECKPOINT_RESUMED)
 *       reopen_what_the_recovery_could_not();
 *   else if (r < 0)
 *       perror("checkpoint");
 *
 * How it works: MOSIX_CHECKPOINT_SYSCALL is a system call number Linux does
 * not have; under mosrun the discipline's filter hands it to the process
 * tree's guard, which asks the node agent and answers when the checkpoint is
 * complete.  Outside mosrun the kernel fails it with ENOSYS. */
#ifndef MOSIX_CHECKPOINT_H
#define MOSIX_CHECKPOINT_H

#include <errno.h>
#include <unistd.h>

#if !defined(__cplusplus) && defined(__GLIBC__) && !defined(__USE_MISC)
long syscall(long number, ...); /* strict -std=c11: <unistd.h> hides it */
#endif

#define MOSIX_CHECKPOINT_SYSCALL 0x3f4d5359L /* = MOSIX_CHECKPOINT_NR of the discipline */

#define MOSIX_CHECKPOINT_OP_CHECKPOINT 1
#define MOSIX_CHECKPOINT_OP_SET_FILE 2
#define MOSIX_CHECKPOINT_OP_SET_LIMIT 3
#define MOSIX_CHECKPOINT_OP_SET_INTERVAL 4

#define MOSIX_CHECKPOINT_DONE 0
#define MOSIX_CHECKPOINT_RESUMED 1

static inline int mosix_checkpoint(void)
{
    return (int)syscall(MOSIX_CHECKPOINT_SYSCALL, (long)MOSIX_CHECKPOINT_OP_CHECKPOINT, 0L);
}

static inline int mosix_checkpoint_file(const char *name)
{
    return (int)syscall(MOSIX_CHECKPOINT_SYSCALL, (long)MOSIX_CHECKPOINT_OP_SET_FILE, name);
}

static inline int mosix_checkpoint_limit(int max)
{
    return (int)syscall(MOSIX_CHECKPOINT_SYSCALL, (long)MOSIX_CHECKPOINT_OP_SET_LIMIT, (long)max);
}

static inline int mosix_checkpoint_interval(int minutes)
{
    return (int)syscall(MOSIX_CHECKPOINT_SYSCALL, (long)MOSIX_CHECKPOINT_OP_SET_INTERVAL,
                        (long)minutes);
}

#endif
