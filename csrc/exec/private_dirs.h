/* private_dirs.h - mosrun -X{/dir}: the program's private temporary directories.
 *
 * The launcher gives the program's tree a mount namespace of its own (inside a
 * user namespace of its own when the user is not root) and mounts one fresh
 * tmpfs for all of them: each directory is a bind mount of a subdirectory of
 * it, so the tmpfs's size is the total of all the process's private files
 * (the administrator's maximum, mosrun -X).  What the tree creates there is
 * seen by no other process and goes away with the tree's last process. */
#ifndef MOSIX_PRIVATE_DIRS_H
#define MOSIX_PRIVATE_DIRS_H

#define PRIVATE_DIRS_MAX 10

struct private_dirs {
    const char *dir[PRIVATE_DIRS_MAX];
    int count;
    unsigned long limit_mb; /* the tmpfs's size in MiB (0: half the memory) */
};

/* The total size of all the directories' files, in MiB (mosix-exec -L,
 * mosix-remote -L: the administrator's maximum at home); returns 0, or -1
 * when ``text`` is not a whole number from 1 to 2^32. */
int private_dirs_limit(struct private_dirs *dirs, const char *text);

/* Add one -X directory; returns 0, or -1 when there are too many. */
int private_dirs_add(struct private_dirs *dirs, const char *dir);

/* Make the namespace and the mounts.  On failure returns -errno and sets *what
 * to the step (a directory or an operation) that failed. */
int private_dirs_enter(const struct private_dirs *dirs, const char **what);

/* Fill the directories from descriptor ``fd`` (mosrun -R: the image's files):
 * records of the index of a directory (u16), a name's length (u16), st_mode
 * (u32) and a size (u64), native byte order, then the name (one component)
 * and the contents.  Reads ``fd`` to its end and closes it.  On failure returns
 * -errno and sets *what to the file's name or the step. */
int private_dirs_fill(const struct private_dirs *dirs, int fd, const char **what);

#endif
