/* ckpt_capture_image.c - the output: the checkpoint file's protocol and its owner.
 *
 * -o PATH: the image is written to a temporary name in PATH's directory
 * (O_EXCL, mode 0), synced, made 0400 and renamed onto PATH, so PATH never
 * holds half an image.  As root for another user's process, the file is
 * created with the user's fsuid/fsgid (and groups), so it is the user's and
 * the user's permissions on the directory apply; root stays root for ptrace.
 * The image itself is written by ckpt_capture_stream.c. */
#include "ckpt_capture_common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAME_MAX_BYTES 255

/* ------------------------------------------------------------ owner */

static int set_fs_ids(uid_t uid, gid_t gid)
{
    /* setfsuid/setfsgid return the previous id whatever happens: read back to check */
    (void)setfsgid(gid);
    if ((gid_t)setfsgid((gid_t)-1) != gid)
        return -1;
    (void)setfsuid(uid);
    if ((uid_t)setfsuid((uid_t)-1) != uid)
        return -1;
    return 0;
}

void ck_owner_begin(const struct ck_owner *o)
{
    if (o && o->switch_ids && set_fs_ids(o->fsuid, o->fsgid) < 0)
        ck_fail("cannot take the file system ids %u:%u", (unsigned)o->fsuid, (unsigned)o->fsgid);
}

void ck_owner_end(const struct ck_owner *o)
{
    /* used by cleanup too: reports, never fails */
    if (o && o->switch_ids && set_fs_ids(geteuid(), getegid()) < 0)
        ck_warn("cannot take back the file system ids");
}

/* ------------------------------------------------------------ -o PATH */

static void split_path(const char *path, char **dir, char **name)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = strdup(".");
        *name = strdup(path);
    } else {
        size_t n = (size_t)(slash - path);
        *dir = n ? strndup(path, n) : strdup("/");
        *name = strdup(slash + 1);
    }
    if (!*dir || !*name)
        ck_fail("out of memory");
    if (!**name || strcmp(*name, ".") == 0 || strcmp(*name, "..") == 0)
        ck_fail("%s: not a file name", path);
}

static int open_dir(int cwdfd, const char *dir)
{
    int fd = openat(cwdfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) /* searchable but not readable: no directory fsync */
        fd = openat(cwdfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd;
}

static int create_tmp(struct ck_output *o)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        o->fd = openat(o->dirfd, o->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0);
        if (o->fd >= 0 || errno != EEXIST || attempt)
            break;
        /* left by a killed checkpointer that had our pid */
        if (unlinkat(o->dirfd, o->tmp, 0) < 0)
            break;
    }
    return o->fd;
}

void ck_output_create(struct ck_output *o, int cwdfd, const char *path,
                      const struct ck_owner *owner)
{
    char *dir;
    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->dirfd = -1;
    o->owner = owner;
    split_path(path, &dir, &o->name);
    char tmp[NAME_MAX_BYTES + 1];
    char suffix[32];
    snprintf(suffix, sizeof(suffix), ".tmp.%d", (int)getpid());
    int keep = (int)(NAME_MAX_BYTES - 1 - strlen(suffix)); /* "." + name + suffix fits */
    snprintf(tmp, sizeof(tmp), ".%.*s%s", keep, o->name, suffix);
    o->tmp = strdup(tmp);
    if (!o->tmp)
        ck_fail("out of memory");
    ck_owner_begin(owner);
    o->dirfd = open_dir(cwdfd, dir);
    int err = errno;
    if (o->dirfd >= 0 && create_tmp(o) < 0)
        err = errno;
    ck_owner_end(owner);
    if (o->dirfd < 0) {
        errno = err;
        ck_fail_errno("%s", dir);
    }
    if (o->fd < 0) {
        errno = err;
        ck_fail_errno("%s: cannot create a temporary file", path);
    }
    free(dir);
}

void ck_output_commit(struct ck_output *o)
{
    if (fsync(o->fd) < 0)
        ck_fail_errno("%s: fsync", o->name);
    if (fchmod(o->fd, 0400) < 0)
        ck_fail_errno("%s: fchmod", o->name);
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) < 0) {
        o->fd = -1;
        ck_fail_errno("%s: close", o->name);
    }
    ck_owner_begin(o->owner);
    int rc = renameat(o->dirfd, o->tmp, o->dirfd, o->name);
    int err = errno;
    ck_owner_end(o->owner);
    if (rc < 0) {
        errno = err;
        ck_fail_errno("%s: rename", o->name);
    }
    free(o->tmp);
    o->tmp = NULL; /* nothing left to discard */
    /* make the rename durable; a directory opened O_PATH (not readable) cannot be synced */
    if (fsync(o->dirfd) < 0 && errno != EBADF)
        ck_warn("%s: fsync of the directory: %s", o->name, strerror(errno));
    if (close(o->dirfd) < 0)
        ck_warn("%s: close of the directory: %s", o->name, strerror(errno));
    o->dirfd = -1;
}

void ck_output_discard(struct ck_output *o)
{
    if (o->fd >= 0 && close(o->fd) < 0)
        ck_warn("close: %s", strerror(errno));
    o->fd = -1;
    if (o->tmp && o->dirfd >= 0) {
        ck_owner_begin(o->owner);
        if (unlinkat(o->dirfd, o->tmp, 0) < 0 && errno != ENOENT)
            ck_warn("%s: cannot remove the temporary file: %s", o->tmp, strerror(errno));
        ck_owner_end(o->owner);
    }
    free(o->tmp);
    o->tmp = NULL;
}

/* ------------------------------------------------------------ writing */

static int wait_writable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int r = poll(&p, 1, -1);
        if (r > 0)
            return 0;
        if (r < 0 && errno == EINTR && !ck_interrupted)
            continue;
        return -1;
    }
}

int ck_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR && !ck_interrupted)
            continue;
        if (w < 0 && errno == EAGAIN && wait_writable(fd) == 0)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            ck_set_why_errno("writing the image");
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}
