/* guard_private.h - the guard's part of mosrun -X: names made in a private
 * directory must be regular files. */
#ifndef MOSIX_GUARD_PRIVATE_H
#define MOSIX_GUARD_PRIVATE_H

#include <linux/seccomp.h>

#include "private_dirs.h"

/* Remember which file systems are the private directories (their tmpfs, mounted
 * by private_dirs_enter).  Returns 0 or -errno. */
int guard_private_init(const struct private_dirs *dirs);

/* Answer ``req`` when it is one of the checked calls (policy.py's
 * PRIVATE_DIR_CHECKS): EPERM when the new name's directory is a private one,
 * else continue.  Returns 1 when ``resp`` is filled, 0 when ``req`` is another
 * call. */
int guard_private_answer(int listener, const struct seccomp_notif *req,
                         struct seccomp_notif_resp *resp);

#endif
