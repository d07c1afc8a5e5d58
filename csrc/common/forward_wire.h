/* forward_wire.h - the frames on a migrated process's channel (one definition).
 *
 * The channel is one TCP connection, set up and authenticated by the two node
 * agents, between the supervisor of the remote copy (mosix-remote, on the node
 * where the process runs) and its deputy (mosix-deputy, the original process at
 * home).  After that no Python touches it.  Every frame is a 16-byte header and
 * `len` payload bytes, in host order (x86-64 on both sides):
 *
 *   REQUEST  remote -> home  id: the call's number (counts up)  payload: forward.h request
 *   REPLY    home -> remote  id: the request's id                payload: forward.h reply
 *   SIGNAL   home -> remote  id: a signal sent to the home pid, to deliver to the copy
 *   STOPPED  remote -> home  id: the signal that stopped the copy: the deputy stops too
 *   EXIT     remote -> home  id: the copy's wait status: the deputy ends the same way
 *   LEAVING  remote -> home  the copy is being migrated away (home or elsewhere): the
 *                            deputy stops serving and waits for its agent's order
 *   SIGNALED remote -> home  id: a SIGNAL frame's signal, now delivered to the copy
 *   HOLD     remote -> home  the copy is about to be captured: read no more requests
 *                            from the direct channel (those that come wait there)
 *   HELD     home -> remote  id: the bytes sent on the direct channel so far; none follow
 *   RESUME   remote -> home  it stays after all: serve the direct channel again
 *
 * The direct channel (a second TCP connection, set up like the first) joins the
 * copy itself (its preload shim's SIGSYS handler, at FWD_DIRECT_FD) and the
 * deputy: REQUEST frames one way, REPLY frames the other, nothing else.  Before
 * a capture (leaving) the supervisor sends HOLD, and says "quiet" only once the
 * copy has read every byte HELD counts: so the copy is never captured with a
 * reply unread, and a request it sends after that is not executed at home (its
 * handler, restored at home mid-call, finds no channel and issues the call again
 * there).
 *
 * One request is outstanding at a time (the process has one thread, and calls
 * that create processes bring it home first), so the home side never needs the
 * remote's memory while it works: the request carries every input buffer
 * (forward.h).  A REPLY for a request the remote no longer waits for (the
 * call was interrupted by a signal) is dropped by id. */
#ifndef MOSIX_FORWARD_WIRE_H
#define MOSIX_FORWARD_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum fwd_frame_type {
    FWD_FRAME_REQUEST = 1,
    FWD_FRAME_REPLY = 2,
    FWD_FRAME_SIGNAL = 3,
    FWD_FRAME_STOPPED = 4,
    FWD_FRAME_EXIT = 5,
    FWD_FRAME_LEAVING = 6,
    FWD_FRAME_SIGNALED = 7,
    FWD_FRAME_HOLD = 8,
    FWD_FRAME_HELD = 9,
    FWD_FRAME_RESUME = 10,
};

struct fwd_frame {
    uint32_t len;  /* payload bytes that follow */
    uint32_t type; /* enum fwd_frame_type */
    uint64_t id;
};

#define FWD_FRAME_MAX_PAYLOAD ((1u << 20) + 4096) /* FWD_MAX_DATA and the call's head */

/* The deputy keeps its own descriptors (channels, agent socket, signal pipe)
 * among the DEPUTY_OWN_FDS highest below min(RLIMIT_NOFILE, DEPUTY_FD_TOP):
 * mosix_deputy.c puts them there, a checkpoint away (ckpt_away.c) leaves them out. */
#define DEPUTY_OWN_FDS 16
#define DEPUTY_FD_TOP 4096

/* forward_channel.c: 0, or -1 (errno; or the end of the stream for a read). */
int fwd_read_full(int fd, void *buf, size_t len);
int fwd_write_full(int fd, const void *buf, size_t len); /* MSG_NOSIGNAL */
int fwd_send_frame(int fd, uint32_t type, uint64_t id, const void *payload, size_t len);
/* read(2)/write(2) of exactly len bytes, EINTR retried: 0, or -errno (a read that
 * meets the end first: -at_end). */
int mosix_read_exact(int fd, void *buf, size_t len, int at_end);
int mosix_write_exact(int fd, const void *buf, size_t len);
/* One descriptor sent with SCM_RIGHTS (close-on-exec here); -1 if none came. */
int mosix_receive_fd(int sock);
/* sendmsg of len bytes at buf, with descriptor fd as SCM_RIGHTS (none when fd < 0),
 * retried on EINTR: what sendmsg returned (-1 and errno on failure). */
ssize_t mosix_send_fd(int sock, const void *buf, size_t len, int fd, int flags);

#endif
