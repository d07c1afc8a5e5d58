/* ckpt_capture_files.c - the descriptor table: FILE and FILEDATA records.
 *
 * The copy's descriptor table is a copy of the process's at the frozen point,
 * but the open file descriptions (offsets, status flags) and the files are
 * shared with the live process, which moves on: offsets and flags are read
 * from /proc/PID/fdinfo and each file's size from /proc/PID/fd while the
 * process is stopped (ck_snap_fds), everything else from the copy afterwards.
 * A size read afterwards would hold what the process appended since the
 * frozen point, and recovery would cut the file back to that size and the
 * process write those lines again (tests/test_ckpt_capture.py, appender). */
#include "ckpt_capture_common.h"
#include "exec/private_dirs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DATA_CHUNK (4u << 20) /* FILEDATA bytes per record */
#define DELETED_SUFFIX " (deleted)"

/* The descriptors listed in dirname ("fd" or "fdinfo") of a /proc/PID directory,
 * sorted; the count.  More than CK_MAX_FDS is refused. */
static int list_fds(int procfd, const char *dirname, int *fds)
{
    int dfd = openat(procfd, dirname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        ck_fail_errno("/proc/PID/%s", dirname);
    DIR *d = fdopendir(dfd);
    if (!d)
        ck_fail_errno("/proc/PID/%s", dirname);
    int n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t fd;
        if (ck_parse_u64(e->d_name, 10, &fd) < 0)
            continue;
        if (n == CK_MAX_FDS) {
            closedir(d);
            ck_refuse("it has more than %d open files", CK_MAX_FDS);
        }
        fds[n++] = (int)fd;
    }
    if (errno)
        ck_fail_errno("/proc/PID/%s", dirname);
    if (closedir(d) < 0)
        ck_fail_errno("closedir");
    for (int i = 1; i < n; i++) /* insertion sort: usually already in order */
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    return n;
}

/* pos and flags of /proc/PID/fdinfo/FD: 0, or -1 when the fd is gone. */
static int read_fdinfo(int procfd, int fd, struct ck_fdpos *out)
{
    char path[64], text[4096], value[64];
    snprintf(path, sizeof(path), "fdinfo/%d", fd);
    if (ck_read_small(procfd, path, text, sizeof(text)) < 0) {
        if (errno == ENOENT)
            return -1;
        ck_fail_errno("/proc/PID/%s", path);
    }
    uint64_t pos, flags;
    if (ck_status_value(text, "pos", value, sizeof(value)) < 0 ||
        ck_parse_u64(value, 10, &pos) < 0 ||
        ck_status_value(text, "flags", value, sizeof(value)) < 0 ||
        ck_parse_u64(value, 8, &flags) < 0)
        ck_fail("/proc/PID/%s: cannot parse", path);
    out->fd = fd;
    out->pos = (int64_t)pos;
    out->flags = (uint32_t)flags;
    return 0;
}

/* The size (and identity) of the file on descriptor e->fd, now. */
static void read_size(int procfd, struct ck_fdpos *e)
{
    char path[32];
    struct stat st;
    snprintf(path, sizeof(path), "fd/%d", e->fd);
    e->has_size = 0;
    if (fstatat(procfd, path, &st, 0) < 0) {
        if (errno == ENOENT)
            return; /* gone meanwhile: the copy decides */
        ck_fail_errno("/proc/PID/%s", path);
    }
    e->has_size = 1;
    e->size = st.st_size;
    e->dev = (uint64_t)st.st_dev;
    e->ino = (uint64_t)st.st_ino;
}

void ck_snap_fds(int procfd, struct ck_fdsnap *snap)
{
    int fds[CK_MAX_FDS];
    int n = list_fds(procfd, "fdinfo", fds);
    snap->n = 0;
    for (int i = 0; i < n; i++)
        if (read_fdinfo(procfd, fds[i], &snap->e[snap->n]) == 0) {
            read_size(procfd, &snap->e[snap->n]);
            snap->n++;
        }
}

static const struct ck_fdpos *snapped(const struct ck_fdsnap *snap, int fd)
{
    int lo = 0, hi = snap->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (snap->e[mid].fd == fd)
            return &snap->e[mid];
        if (snap->e[mid].fd < fd)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int ck_list_fds(int procfd, int *fds)
{
    return list_fds(procfd, "fd", fds);
}

static void refuse_stream(int fd, mode_t mode)
{
    if (ck_migrating)
        return; /* the descriptor stays at home, in the deputy */
    ck_refuse("it has an open %s (descriptor %d)", S_ISSOCK(mode) ? "socket" : "pipe", fd);
}

void ck_precheck_files(int procfd)
{
    int fds[CK_MAX_FDS];
    int n = list_fds(procfd, "fd", fds);
    int dfd = openat(procfd, "fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        ck_fail_errno("/proc/PID/fd");
    /* a migration: the files of its private directories move, a descriptor would not */
    static struct ck_private_dir private[PRIVATE_DIRS_MAX];
    int nprivate = ck_migrating ? ck_private_dirs(procfd, private, PRIVATE_DIRS_MAX) : 0;
    for (int i = 0; i < n; i++) {
        char name[16];
        struct stat st;
        snprintf(name, sizeof(name), "%d", fds[i]);
        if (fds[i] <= 2 || fstatat(dfd, name, &st, 0) < 0) /* gone meanwhile: the copy decides */
            continue;
        if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
            refuse_stream(fds[i], st.st_mode);
        for (int k = 0; S_ISREG(st.st_mode) && k < nprivate; k++)
            if (private[k].dev == st.st_dev)
                ck_refuse("it has a file of its private directory %s open (descriptor %d): "
                          "it moves only while none is open",
                          private[k].point, fds[i]);
    }
    if (close(dfd) < 0)
        ck_fail_errno("close");
}

static void strip_deleted(char *path)
{
    size_t n = strlen(path), t = strlen(DELETED_SUFFIX);
    if (n >= t && strcmp(path + n - t, DELETED_SUFFIX) == 0)
        path[n - t] = '\0';
}

/* FileKind of a descriptor (the manual's rules; see format.FileKind). */
static uint32_t file_kind(int fd, const struct stat *st, const char *link, uint32_t flags)
{
    if (S_ISFIFO(st->st_mode) || S_ISSOCK(st->st_mode)) {
        if (fd > 2)
            refuse_stream(fd, st->st_mode);
        return MOSIX_CKPT_FILE_SPECIAL; /* a standard stream: the recovering mosrun's own */
    }
    if (link[0] != '/' || strncmp(link, "/memfd:", 7) == 0)
        return MOSIX_CKPT_FILE_OTHER; /* anon_inode:[eventfd], pidfd, memfd... */
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
        return MOSIX_CKPT_FILE_SPECIAL;
    if (S_ISDIR(st->st_mode))
        return MOSIX_CKPT_FILE_DIRECTORY;
    if (!S_ISREG(st->st_mode))
        return MOSIX_CKPT_FILE_OTHER;
    /* a deleted file open for writing only is reopened by its old path (the manual) */
    if (st->st_nlink == 0 && (flags & O_ACCMODE) != O_WRONLY)
        return MOSIX_CKPT_FILE_UNLINKED;
    return MOSIX_CKPT_FILE_REGULAR;
}

static void describe(int fddir, int fd, const struct ck_fdpos *pos, struct ck_file *f)
{
    char name[16];
    struct stat st;
    snprintf(name, sizeof(name), "%d", fd);
    if (fstatat(fddir, name, &st, 0) < 0)
        ck_fail_errno("/proc/PID/fd/%d", fd);
    if (ck_readlink(fddir, name, f->path, sizeof(f->path)) < 0)
        ck_fail_errno("/proc/PID/fd/%d", fd);
    if (st.st_nlink == 0)
        strip_deleted(f->path);
    memset(&f->rec, 0, sizeof(f->rec));
    f->rec.fd = fd;
    f->rec.flags = pos->flags & ~(uint32_t)O_CLOEXEC;
    f->rec.cloexec = (pos->flags & O_CLOEXEC) ? 1 : 0;
    f->rec.kind = file_kind(fd, &st, f->path, f->rec.flags);
    f->rec.mode = st.st_mode;
    f->rec.path_len = (uint32_t)strlen(f->path);
    f->rec.offset = pos->pos;
    /* the size at the frozen point: the live process may have written since */
    int same = pos->has_size && pos->dev == (uint64_t)st.st_dev && pos->ino == (uint64_t)st.st_ino;
    f->rec.size = same ? pos->size : st.st_size;
    f->rec.dev = st.st_dev;
    f->rec.ino = st.st_ino;
}

int ck_own_from = -1;

/* A pipe or socket at or past ck_own_from: the deputy's own (its channels, its
 * agent connection, its signal pipe sit at the top of the descriptor range). */
static int deputys_own(int fddir, int fd)
{
    char name[16];
    struct stat st;
    if (ck_own_from < 0 || fd < ck_own_from)
        return 0;
    snprintf(name, sizeof(name), "%d", fd);
    return fstatat(fddir, name, &st, 0) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

void ck_collect_files(int childfd, const struct ck_fdsnap *snap, struct ck_files *out)
{
    int fds[CK_MAX_FDS];
    int n = list_fds(childfd, "fd", fds);
    int fddir = openat(childfd, "fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fddir < 0)
        ck_fail_errno("/proc/PID/fd");
    out->n = 0;
    out->f = ck_alloc(sizeof(*out->f) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        struct ck_fdpos now;
        if (deputys_own(fddir, fds[i]))
            continue;
        const struct ck_fdpos *pos = snapped(snap, fds[i]);
        if (!pos) { /* not open at the snapshot: cannot be, the tables are the same */
            if (read_fdinfo(childfd, fds[i], &now) < 0)
                continue;
            now.has_size = 0;
            pos = &now;
        }
        describe(fddir, fds[i], pos, &out->f[out->n++]);
    }
    if (close(fddir) < 0)
        ck_fail_errno("close");
}

/* The copy's descriptor itself (pidfd_getfd: we trace the copy), so the
 * contents are read with the access the process has, not by reopening the file
 * through /proc (which checks the file's permissions against ours: a user's
 * process may hold a file it could no longer open).  pread leaves the shared
 * offset alone.  An O_PATH descriptor cannot be read: reopened. */
static int open_unlinked(pid_t copy, int childfd, const struct ck_file *f)
{
    if (!(f->rec.flags & O_PATH)) {
        int pidfd = (int)syscall(SYS_pidfd_open, copy, 0);
        if (pidfd >= 0) {
            int fd = (int)syscall(SYS_pidfd_getfd, pidfd, f->rec.fd, 0);
            int err = errno;
            if (close(pidfd) < 0)
                ck_fail_errno("close");
            if (fd >= 0)
                return fd;
            errno = err;
        }
        if (errno != ENOSYS) /* before Linux 5.6: reopen */
            ck_fail_errno("%s (deleted): cannot read it", f->path);
    }
    char name[32];
    snprintf(name, sizeof(name), "fd/%d", f->rec.fd);
    int fd = openat(childfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        ck_fail_errno("%s (deleted): cannot read it", f->path);
    return fd;
}

static void write_filedata(struct ck_image *im, pid_t copy, int childfd, const struct ck_file *f,
                           unsigned char *buf)
{
    int fd = open_unlinked(copy, childfd, f);
    for (uint64_t off = 0; off < (uint64_t)f->rec.size;) {
        uint64_t left = (uint64_t)f->rec.size - off;
        size_t want = left < DATA_CHUNK ? (size_t)left : DATA_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            ck_fail_errno("%s (deleted)", f->path);
        if (got == 0)
            break; /* shortened meanwhile */
        struct mosix_ckpt_filedata rec = {.fd = f->rec.fd, .offset = off};
        struct iovec parts[2] = {{.iov_base = &rec, .iov_len = sizeof(rec)},
                                 {.iov_base = buf, .iov_len = (size_t)got}};
        ck_image_record(im, MOSIX_CKPT_KIND_FILEDATA, parts, 2);
        off += (uint64_t)got;
        ck_check_interrupted();
    }
    if (close(fd) < 0)
        ck_fail_errno("close");
}

void ck_write_files(struct ck_image *im, pid_t copy, int childfd, const struct ck_files *files)
{
    for (int i = 0; i < files->n; i++) {
        const struct ck_file *f = &files->f[i];
        struct iovec parts[2] = {{.iov_base = (void *)&f->rec, .iov_len = sizeof(f->rec)},
                                 {.iov_base = (void *)f->path, .iov_len = f->rec.path_len}};
        ck_image_record(im, MOSIX_CKPT_KIND_FILE, parts, 2);
    }
    unsigned char *buf = NULL;
    for (int i = 0; i < files->n; i++) {
        if (files->f[i].rec.kind != MOSIX_CKPT_FILE_UNLINKED)
            continue;
        if (!buf)
            buf = ck_alloc(DATA_CHUNK);
        write_filedata(im, copy, childfd, &files->f[i], buf);
    }
    free(buf);
}
