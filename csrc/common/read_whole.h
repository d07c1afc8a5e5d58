/* read_whole.h - a whole file of any size read into memory (the
 * checkpointer's /proc files, the deputy's mountinfo). */
#ifndef MOSIX_READ_WHOLE_H
#define MOSIX_READ_WHOLE_H

#include <stddef.h>

/* The file at path relative to dirfd, malloc'd and NUL-terminated, its length
 * in *lenp (when lenp is not NULL); NULL with errno. */
char *read_whole_file(int dirfd, const char *path, size_t *lenp);

#endif
