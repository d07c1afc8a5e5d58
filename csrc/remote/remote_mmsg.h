/* remote_mmsg.h - sendmmsg and recvmmsg of a copy on a remote node (remote_mmsg.c).
 *
 * The table cannot marshal an array of msghdr, so the supervisor (mosix-remote)
 * makes the call a sequence of forwarded sendmsg or recvmsg, one per message,
 * built from and applied to the copy's memory like any other call, and writes
 * each message's msg_len.  As the kernel does: at most UIO_MAXIOV messages; the
 * number done, or the first message's error when none was; with
 * MSG_WAITFORONE, messages after the first do not wait.  Not applied: recvmmsg's
 * timeout (the kernel checks it only between messages). */
#ifndef MOSIX_REMOTE_MMSG_H
#define MOSIX_REMOTE_MMSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mmsg_split {
    int recv;            /* recvmmsg, else sendmmsg */
    uint64_t fd, vec;    /* the copy's descriptor (home's) and its mmsghdr array */
    uint64_t flags;      /* for each message */
    unsigned vlen, done; /* messages asked for, and done */
    long nr;             /* the current message's call and arguments */
    uint64_t args[6];
    int ended;           /* the call is done: */
    long result;         /* its result (when mmsg_next returns 0) */
};

/* Start for call nr (sendmmsg or recvmmsg) with args. */
void mmsg_begin(struct mmsg_split *m, long nr, const uint64_t args[6]);

/* The next message's request for the deputy into buf (built from process
 * pid's memory): its length (> 0), or 0 when the call is done (m->result). */
long mmsg_next(struct mmsg_split *m, pid_t pid, void *buf, size_t cap);

/* The deputy's reply for the current message: applied to pid's memory. */
void mmsg_reply(struct mmsg_split *m, pid_t pid, const void *reply, size_t len);

/* The call ends here (its process is leaving): the messages done so far, or,
 * when none was, -1 (it is made again where the process goes). */
long mmsg_cut(const struct mmsg_split *m);

#endif
