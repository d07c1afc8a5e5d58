/* deputy_ids.h - the program's identity calls, executed for the whole deputy
 * (deputy_ids.c). */
#ifndef MOSIX_DEPUTY_IDS_H
#define MOSIX_DEPUTY_IDS_H

#include <stddef.h>
#include <stdint.h>

/* A forwarded request (req, len) that changes the credentials (setuid, setgid,
 * setreuid, setregid, setresuid, setresgid, setgroups): executed so that every
 * thread of the deputy has the new ones, as one thread of a program changes
 * them for all; its reply in rep (its length), or 0 when it is no such call.
 * The kernel keeps credentials per thread, and the deputy serves a copy's
 * calls from several threads (deputy_direct.c): a later call on any of them
 * must run with them. */
size_t deputy_id_call(const unsigned char *req, size_t len, unsigned char *rep, size_t cap);

#endif
