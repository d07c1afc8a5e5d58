/* ckpt_capture_private.c - PRIVATE records: the private temporary directories
 * of mosrun -X and their files.
 *
 * They are the tmpfs mounts named "mosix-private" in the process's mount
 * namespace (csrc/exec/private_dirs.c), found in /proc/COPY/mountinfo and
 * reached through /proc/COPY/root.  We may run as root while the namespace is
 * the user's (a user namespace of the user's own, where another of the user's
 * processes may mount what it likes): a directory counts only when it is
 * still that tmpfs (the device mountinfo names, TMPFS_MAGIC), and a file only
 * when it is a regular file of it, opened without following links; anything
 * else there fails the checkpoint in one line.  The files are read when the
 * image is written: unlike memory, their contents are those of that moment. */
#include "ckpt_capture_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define PRIVATE_SOURCE "mosix-private"

/* mountinfo escapes space, tab, newline and backslash as \ooo: undo in place. */
static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
            p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

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

static void write_file(struct ck_image *im, int dir, dev_t dev, const char *where,
                       const char *name)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        ck_fail_errno("private directory %s: %s", where, name);
    if (!S_ISREG(st.st_mode) || st.st_dev != dev)
        ck_fail("private directory %s: %s is not a regular file of it", where, name);
    if ((uint64_t)st.st_size > MOSIX_CKPT_MAX_RECORD_BYTES - sizeof(struct mosix_ckpt_private) - 256)
        ck_fail("private directory %s: %s is larger than an image record (%llu bytes)", where,
                name, (unsigned long long)MOSIX_CKPT_MAX_RECORD_BYTES);
    unsigned char *data = ck_alloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, data + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            ck_fail_errno("private directory %s: %s", where, name);
        if (n == 0)
            break; /* shortened meanwhile */
        got += (size_t)n;
    }
    if (close(fd) < 0)
        ck_fail_errno("close");
    record(im, MOSIX_CKPT_PRIVATE_FILE, st.st_mode, name, data, got);
    free(data);
    ck_check_interrupted();
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

void ck_write_private(struct ck_image *im, int copyfd)
{
    char *info = read_all(copyfd, "mountinfo");
    int root = -1;
    char *save = NULL;
    for (char *line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
        unsigned major, minor;
        char point[4096], fstype[64], source[64];
        const char *tail = strstr(line, " - ");
        if (tail == NULL || sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &minor, point) != 3 ||
            sscanf(tail, " - %63s %63s", fstype, source) != 2)
            continue;
        if (strcmp(fstype, "tmpfs") != 0 || strcmp(source, PRIVATE_SOURCE) != 0)
            continue;
        unescape(point);
        if (point[0] != '/' || point[1] == '\0')
            continue;
        if (root < 0 && (root = openat(copyfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
            ck_fail_errno("root");
        write_directory(im, root, point, makedev(major, minor));
    }
    if (root >= 0 && close(root) != 0)
        ck_fail_errno("close");
    free(info);
}
