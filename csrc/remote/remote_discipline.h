/* remote_discipline.h - the unsupported-call mode for a copy on a remote node.
 *
 * At home the guard (mosix_guard.c) answers the base filter's notifications
 * for the calls the policy does not support.  On a remote node the copy's only
 * listener is the forward filter's, held by mosix-remote: the forward filter
 * hands it the same calls (forward_filter.GUARDED), and mosix-remote asks
 * rd_decide what the guard would have done.  The message the guard writes on
 * the process's standard error goes home: rd_message_request builds a
 * forwarded write(2, ...) that the deputy executes on the home descriptor. */
#ifndef MOSIX_REMOTE_DISCIPLINE_H
#define MOSIX_REMOTE_DISCIPLINE_H

#include "mosix_shim.h"

#include <stddef.h>
#include <sys/types.h>

enum rd_action {
    RD_NOT_GUARDED, /* a call the forward table decides (not the discipline's) */
    RD_ANSWER,      /* answer with *result (ENOSYS, or the call done for the copy) */
    RD_WARN,        /* -w: the message at home, then ENOSYS */
    RD_KILL,        /* -u: the message at home, then SIGKILL */
    RD_HOME,        /* a pinned call: the process comes home and makes it there */
};

/* What the guard would do with call ``sd`` of the copy ``pid``, whose home pid
 * is ``home_pid``; ``dflt``: the mode when the copy's MOSIX_INHERIT names
 * none.  A priority call naming the process itself (its home pid) is done
 * here, for the copy, as the kernel would do it for the copy itself.  A call
 * the policy pins (a thread, a writable shared map, locked pages, a NUMA
 * policy) would keep the process where it is: it is made at home instead. */
enum rd_action rd_decide(const struct seccomp_data *sd, pid_t pid, pid_t home_pid,
                         enum mosix_mode dflt, long *result);

/* The forwarded request write(2, message, len) for RD_WARN or RD_KILL of call
 * ``nr`` of the copy ``pid`` (named by its home pid): its length, at most cap. */
long rd_message_request(enum rd_action action, pid_t pid, pid_t home_pid, long nr, void *buf,
                        size_t cap);

/* -m's letter (u, e, w) as a mode; -1 for anything else. */
int rd_mode_of_letter(const char *letter);

#endif
