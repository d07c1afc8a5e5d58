/* private_mounts.h - the private temporary directories (mosrun -X) of a process:
 * the tmpfs mounts named MOSIX_PRIVATE_MOUNT_SOURCE (csrc/exec/private_dirs.c) in
 * its mount namespace, as its mountinfo lists them. */
#ifndef MOSIX_PRIVATE_MOUNTS_H
#define MOSIX_PRIVATE_MOUNTS_H

#include "mosix_names.h"

#include <sys/types.h>

/* Call each(point, dev, ctx) for every private directory in the mountinfo text
 * ``info`` (changed in place: it is cut into lines), in the order listed;
 * ``point`` is absolute and not "/".  Returns how many there were. */
int private_mounts_each(char *info, void (*each)(const char *point, dev_t dev, void *ctx),
                        void *ctx);

#endif
