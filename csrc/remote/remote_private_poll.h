/* remote_private_poll.h - poll, ppoll, select and pselect6 of a copy away
 * from home whose set holds private descriptors (mosrun -X; remote_private_poll.c).
 *
 * A private descriptor is the copy's own (remote_private.h); home's numbers
 * mean nothing there.  A set of private descriptors only is the copy's own
 * call (CONTINUE).  A mixed set is split: the private ones are polled here on
 * the supervisor's descriptors of the same files (no wait: they are regular
 * files, whose readiness never changes), the home ones go home as one poll,
 * with no wait when a private one is ready already, else with the call's
 * timeout; the two answers are merged into the copy's memory as the call
 * would have written them (revents or the fd_sets, the count, and the time
 * left for ppoll, select and pselect6).  The signal mask of ppoll and pselect6
 * is not applied (as for any of them served at home). */
#ifndef MOSIX_REMOTE_PRIVATE_POLL_H
#define MOSIX_REMOTE_PRIVATE_POLL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum rpp_action {
    RPP_NONE,     /* no private descriptor in it */
    RPP_CONTINUE, /* only private ones: the copy's own call */
    RPP_ANSWER,   /* answer with *result (an error) */
    RPP_SEND      /* mixed: the home part's request is in buf, *result bytes */
};

/* Whether nr is one of the calls this serves. */
int rpp_is_poll(long nr);

/* Look at the copy's (pid's) call nr with args; local_of(fd) is the
 * supervisor's descriptor of the copy's private fd, or -1.  RPP_SEND: send
 * buf as a request for rpp_args(), then give the reply to rpp_replied. */
enum rpp_action rpp_begin(pid_t pid, long nr, const uint64_t args[6], int (*local_of)(uint64_t),
                          void *buf, size_t cap, long *result);

/* The home part's call (SYS_poll) and its arguments, in this process's memory. */
const uint64_t *rpp_args(void);

/* Home's reply (len bytes) to the home part: the merged result is written to
 * the copy; the call's result, or -errno. */
long rpp_replied(pid_t pid, const void *reply, size_t len);

#endif
