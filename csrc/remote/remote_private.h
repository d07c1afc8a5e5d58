/* remote_private.h - a copy's private temporary directories (mosrun -X) are
 * served where it runs (remote_private.c).
 *
 * The supervisor made the directories (a tmpfs each) in a mount namespace that
 * it shares with the copy, and the restorer filled them from the image's
 * PRIVATE records.  A call on a path in one of them is executed here, by the
 * supervisor, from the same request the deputy would get (forward.h's
 * fwd_request, fwd_execute, fwd_apply): nothing of it goes home.  A
 * descriptor opened there is the copy's own: the supervisor installs its file
 * in the copy (SECCOMP_IOCTL_NOTIF_ADDFD) at a number from the top of the
 * range, below FWD_DIRECT_FD, that home's descriptors do not reach (RP_LOCAL_MAX
 * of them), and the copy's calls on it run in the copy (the notification's
 * CONTINUE).  What cannot be served here fails as the kernel would say it for
 * two file systems: EXDEV (a rename, link or copy between a private directory
 * and another; dup2/dup3 of a private descriptor onto another number; fchdir
 * to one); mkdir, symlink, link and mknod of a special file in one fail with
 * EPERM, as at home (guard_private.c).  A chdir into a private directory is
 * made at home too (the deputy's directory of the same name) and, once home
 * answers, here: relative paths are then served here (without "..").  After
 * another chdir or fchdir made at home, home's getcwd says where it led.  Poll
 * sets with private descriptors: remote_private_poll.h.  A call that would
 * bring the process home (fork, exec, a pinned call) fails with EAGAIN while a
 * private descriptor is open: the move is refused then, and the call would
 * wait for ever.  A path is looked at in
 * the request that is executed (the copy cannot change it in between), as
 * written; one that reaches a private directory through "." or ".." fails with
 * EXDEV (a link before it could lead anywhere on this node). */
#ifndef MOSIX_REMOTE_PRIVATE_H
#define MOSIX_REMOTE_PRIVATE_H

#include "exec/private_dirs.h"

#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RP_LOCAL_MAX 64 /* private descriptors open at once */

enum rp_action {
    RP_NOT_PRIVATE, /* not a call on a private path or descriptor: as before */
    RP_ANSWER,      /* answer with *result */
    RP_CONTINUE,    /* let the copy's own call go on (its private descriptor) */
    RP_ANSWERED,    /* answered already (the descriptor installed), or gone */
    RP_SEND_POLL    /* a poll or select split: its home part's request is in buf,
                     * *result bytes (remote_private_poll.h) */
};

/* The directories (the supervisor's -X), in the namespace already made. */
void rp_init(const struct private_dirs *dirs);

/* Whether the copy has a private descriptor open (a move would be refused). */
int rp_any_open(void);

/* Serve notification n of the copy if it is a call on a private path or
 * descriptor; buf (cap bytes, FWD_PAYLOAD_MAX) is for its request. */
enum rp_action rp_serve(int listener, const struct seccomp_notif *n, void *buf, size_t cap,
                        long *result);

/* Home answered the copy's call nr with result (the current directory: a
 * chdir or fchdir this decided to follow, remote_private.c).  1: where it led
 * is for home's getcwd to say: send rp_cwd_request's request (a getcwd of
 * rp_cwd_args, in this process's memory; its length, or -errno) and give its
 * reply to rp_cwd_replied before answering the copy. */
int rp_home_replied(long nr, long result);
long rp_cwd_request(void *buf, size_t cap);
const uint64_t *rp_cwd_args(void);
void rp_cwd_replied(const void *reply, size_t len);

#endif
