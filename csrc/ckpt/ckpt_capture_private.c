/* ckpt_capture_private.c - PRIVATE records: the private temporary directories
 * of mosrun -X and their files.
 *
 * They are the tmpfs mounts named MOSIX_PRIVATE_MOUNT_SOURCE in the process's mount
 * namespace (csrc/exec/private_dirs.c), found in /proc/COPY/mountinfo and
 * reached through /proc/COPY/root.  We may run as root while the namespace is
 * the user's (a user namespace of the user's own, where another of the user's
 * processes may mount what it likes): a directory counts only when it is
 * still that tmpfs (the device mountinfo names, TMPFS_MAGIC), and a file only
 * when it is a regular file of it, opened without following links; anything
 * else there fails the checkpoint in one line.  The files are read when the
 * image is written: unlike memory, their contents are those of that moment. */
#include "ckpt_capture_common.h"
#include "private_mounts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

static char *read_all(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        ck_fail_errno("%s", name);
    size_t cap = 1 << 16, len = 0;
    char *buf = ck_alloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                ck_fail("out of memory");
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            ck_fail_errno("%s", name);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (close(fd) < 0)
        ck_fail_errno("close");
    buf[len] = '\0';
    return buf;
}

static void record(struct ck_image *im, uint32_t kind, uint32_t mode, const char *path,
                   const void *data, uint64_t size)
{
    struct mosix_ckpt_private rec = {
        .kind = kind, .mode = mode, .path_len = (uint32_t)strlen(path), .size = size};
    struct iovec parts[3] = {{.iov_base = &rec, .iov_len = sizeof(rec)},
                             {.iov_base = (void *)path, .iov_len = rec.path_len},
                             {.iov_base = (void *)data, .iov_len = (size_t)size}};
    ck_image_record(im, MOSIX_CKPT_KIND_PRIVATE, parts, size ? 3 : 2);
}

/* A file: a FILE record with its first part, then a MORE record for each
 * further MOSIX_CKPT_PRIVATE_PART_BYTES (a record holds at most
 * MOSIX_CKPT_MAX_RECORD_BYTES); as long as it was when looked at. */
static void write_file(struct ck_image *im, int dir, dev_t dev, const char *where,
                       const char *name)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        ck_fail_errno("private directory %s: %s", where, name);
    if (!S_ISREG(st.st_mode) || st.st_dev != dev)
        ck_fail("private directory %s: %s is not a regular file of it", where, name);
    size_t size = (size_t)st.st_size, part = MOSIX_CKPT_PRIVATE_PART_BYTES;
    unsigned char *data = ck_alloc(size < part ? (size > 0 ? size : 1) : part);
    size_t done = 0;
    uint32_t kind = MOSIX_CKPT_PRIVATE_FILE;
    for (;;) {
        size_t want = size - done < part ? size - done : part, got = 0;
        while (got < want) {
            ssize_t n = pread(fd, data + got, want - got, (off_t)(done + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                ck_fail_errno("private directory %s: %s", where, name);
            if (n == 0)
                break; /* shortened meanwhile */
            got += (size_t)n;
        }
        record(im, kind, st.st_mode, name, data, got);
        done += got;
        kind = MOSIX_CKPT_PRIVATE_MORE;
        ck_check_interrupted();
        if (got < want || done == size)
            break;
    }
    if (close(fd) < 0)
        ck_fail_errno("close");
    free(data);
}

static void write_directory(struct ck_image *im, int root, const char *where, dev_t dev)
{
    int dir = openat(root, where + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    struct statfs fs;
    if (dir < 0 || fstat(dir, &st) != 0 || fstatfs(dir, &fs) != 0)
        ck_fail_errno("private directory %s", where);
    if (st.st_dev != dev || fs.f_type != TMPFS_MAGIC)
        ck_fail("private directory %s: not the process's private file system", where);
    record(im, MOSIX_CKPT_PRIVATE_DIRECTORY, st.st_mode, where, NULL, 0);
    int listing = dup(dir);
    DIR *d = listing >= 0 ? fdopendir(listing) : NULL;
    if (d == NULL)
        ck_fail_errno("private directory %s", where);
    struct dirent *e;
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        write_file(im, dir, dev, where, e->d_name);
    }
    if (errno != 0)
        ck_fail_errno("private directory %s", where);
    if (closedir(d) != 0 || close(dir) != 0)
        ck_fail_errno("close");
}

struct private_walk {
    struct ck_image *im;
    int copyfd, root;
};

static void write_one(const char *point, dev_t dev, void *ctx)
{
    struct private_walk *w = ctx;
    if (w->root < 0 && (w->root = openat(w->copyfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        ck_fail_errno("root");
    write_directory(w->im, w->root, point, dev);
}

void ck_write_private(struct ck_image *im, int copyfd)
{
    char *info = read_all(copyfd, "mountinfo");
    struct private_walk w = {.im = im, .copyfd = copyfd, .root = -1};
    (void)private_mounts_each(info, write_one, &w);
    if (w.root >= 0 && close(w.root) != 0)
        ck_fail_errno("close");
    free(info);
}

struct private_devs {
    struct ck_private_dir *dir;
    int count, max;
};

static void add_dev(const char *point, dev_t dev, void *ctx)
{
    struct private_devs *d = ctx;
    if (d->count >= d->max)
        return;
    d->dir[d->count].dev = dev;
    snprintf(d->dir[d->count].point, sizeof(d->dir[d->count].point), "%s", point);
    d->count++;
}

int ck_private_dirs(int procfd, struct ck_private_dir *dirs, int max)
{
    char *info = read_all(procfd, "mountinfo");
    struct private_devs d = {.dir = dirs, .count = 0, .max = max};
    (void)private_mounts_each(info, add_dev, &d);
    free(info);
    return d.count;
}
