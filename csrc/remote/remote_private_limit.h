/* remote_private_limit.h - the administrator's maximum of a copy's private files
 * away from home (mosrun -X; the manual: "exceeding this maximum will cause a
 * process to migrate back to its home-node").
 *
 * The supervisor watches the private directories with inotify (a private file
 * closed) and, at each event, reads the used size of their tmpfs (one for all of
 * them: private_dirs.h) with fstatfs.  The copy's writes are
 * its own (they run in the copy, not through the supervisor): nothing is
 * trapped.  Over the maximum, the process should go home; the supervisor asks
 * only while no private descriptor is open (a move is refused then: the files
 * move, a descriptor would not), i.e. at the close that ends the last one. */
#ifndef MOSIX_REMOTE_PRIVATE_LIMIT_H
#define MOSIX_REMOTE_PRIVATE_LIMIT_H

#include "exec/private_dirs.h"

/* Watch ``dirs`` (made already) against ``limit_mb`` MiB (0: no watch).  Returns
 * the descriptor to poll (-1: none), or -errno; *what names what failed. */
int rpl_start(const struct private_dirs *dirs, unsigned long limit_mb, const char **what);

/* Read the events on the descriptor (none waiting is fine).  Returns 0, or -errno. */
int rpl_events(void);

/* Whether the files together are over the maximum now (they were at the last
 * event, or at the start).  Returns 1 or 0, or -errno. */
int rpl_over(void);

#endif
