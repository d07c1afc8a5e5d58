/* private_dirs.c - mosrun -X{/dir}: a private tmpfs on each directory. */
#include "private_dirs.h"

#include "forward_wire.h"
#include "mosix_names.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* All the directories together, without an administrator's maximum: at most half
 * of the node's memory, the kernel's tmpfs default, written out so that no mount
 * option of the system changes it. */
#define PRIVATE_TMPFS_SIZE "50%"
#define PRIVATE_LIMIT_MAX_MB (1UL << 32)

/* The new mount API (Linux 5.2), by number: older C libraries lack the wrappers. */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

int private_dirs_add(struct private_dirs *dirs, const char *dir)
{
    if (dirs->count >= PRIVATE_DIRS_MAX)
        return -1;
    dirs->dir[dirs->count++] = dir;
    return 0;
}

int private_dirs_limit(struct private_dirs *dirs, const char *text)
{
    char *end;
    errno = 0;
    unsigned long mb = strtoul(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || mb == 0 ||
        mb > PRIVATE_LIMIT_MAX_MB)
        return -1;
    dirs->limit_mb = mb;
    return 0;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int err = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
    if (close(fd) != 0 && err == 0)
        err = -errno;
    return err;
}

/* A user namespace where the user is itself (one uid, one gid): an unprivileged
 * user may then make a mount namespace.  The program's uid and gid are
 * unchanged; ids of other users show as the overflow id (nobody). */
static int enter_user_namespace(const char **what)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    char map[64];
    int err;
    *what = "unshare(CLONE_NEWUSER|CLONE_NEWNS)";
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
        return -errno;
    *what = "/proc/self/setgroups";
    if ((err = write_file("/proc/self/setgroups", "deny")) != 0)
        return err;
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
    *what = "/proc/self/uid_map";
    if ((err = write_file("/proc/self/uid_map", map)) != 0)
        return err;
    snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
    *what = "/proc/self/gid_map";
    return write_file("/proc/self/gid_map", map);
}

/* One tmpfs for all the directories, so that its size bounds their total: it is
 * mounted on the last directory for a moment and holds a subdirectory per
 * directory ("0", "1"...); each directory but the last becomes a bind mount of
 * its subdirectory, and the last a clone of its own once the tmpfs is taken off
 * it (the bind mounts keep it).  Each directory's mount is then the only one on
 * it, listed in the order given, with MOSIX_PRIVATE_MOUNT_SOURCE as its source
 * (private_mounts.h). */
static int mount_one_tmpfs(const struct private_dirs *dirs, uid_t uid, gid_t gid,
                           const char **what)
{
    char options[128], size[32], sub[4096];
    if (dirs->limit_mb > 0)
        snprintf(size, sizeof(size), "%lum", dirs->limit_mb);
    else
        snprintf(size, sizeof(size), "%s", PRIVATE_TMPFS_SIZE);
    snprintf(options, sizeof(options), "size=%s,mode=0700,uid=%u,gid=%u", size, (unsigned)uid,
             (unsigned)gid);
    int last = dirs->count - 1;
    const char *stage = dirs->dir[last];
    *what = stage;
    if (mount(MOSIX_PRIVATE_MOUNT_SOURCE, stage, "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
        return -errno;
    for (int k = 0; k <= last; k++) {
        snprintf(sub, sizeof(sub), "%s/%d", stage, k);
        if (mkdir(sub, 0700) != 0 || chown(sub, uid, gid) != 0 || chmod(sub, 0700) != 0)
            return -errno;
    }
    for (int k = 0; k < last; k++) {
        snprintf(sub, sizeof(sub), "%s/%d", stage, k);
        *what = dirs->dir[k];
        if (mount(sub, dirs->dir[k], NULL, MS_BIND, NULL) != 0)
            return -errno;
    }
    snprintf(sub, sizeof(sub), "%s/%d", stage, last);
    *what = stage;
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, sub, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return -errno;
    int err = 0;
    if (umount2(stage, MNT_DETACH) != 0 ||
        syscall(SYS_move_mount, tree, "", AT_FDCWD, stage, MOVE_MOUNT_F_EMPTY_PATH) != 0)
        err = -errno;
    if (close(tree) != 0 && err == 0)
        err = -errno;
    return err;
}

int private_dirs_enter(const struct private_dirs *dirs, const char **what)
{
    if (dirs->count == 0)
        return 0;
    uid_t uid = getuid();
    gid_t gid = getgid();
    /* Each directory must exist (as a directory) before anything changes. */
    for (int k = 0; k < dirs->count; k++) {
        struct stat st;
        *what = dirs->dir[k];
        if (stat(dirs->dir[k], &st) != 0)
            return -errno;
        if (!S_ISDIR(st.st_mode))
            return -ENOTDIR;
    }
    if (geteuid() == 0) {
        *what = "unshare(CLONE_NEWNS)";
        if (unshare(CLONE_NEWNS) != 0)
            return -errno;
    } else {
        int err = enter_user_namespace(what);
        if (err != 0)
            return err;
    }
    /* Nothing mounted here reaches the node's namespace. */
    *what = "mount --make-rprivate /";
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -errno;
    int err = mount_one_tmpfs(dirs, uid, gid, what);
    if (err != 0)
        return err;
    /* A current directory that is one of them is entered again by its path:
     * the tmpfs now (the one it was is the node's, underneath). */
    char here[4096];
    if (getcwd(here, sizeof(here)) == NULL)
        return 0; /* none of them (unreachable, or longer than any) */
    for (int k = 0; k < dirs->count; k++)
        if (strcmp(here, dirs->dir[k]) == 0 && chdir(dirs->dir[k]) != 0) {
            *what = dirs->dir[k];
            return -errno;
        }
    return 0;
}

struct __attribute__((packed)) private_file_head {
    uint16_t dir, name_len;
    uint32_t mode;
    uint64_t size;
};

static int fill_one(const struct private_dirs *dirs, int fd, const struct private_file_head *h,
                    char *name, const char **what)
{
    static char buf[1 << 16];
    int err;
    *what = "the private files";
    if (h->dir >= dirs->count || h->name_len == 0 || h->name_len > 255)
        return -EINVAL;
    if ((err = mosix_read_exact(fd, name, h->name_len, EIO)) != 0)
        return err;
    name[h->name_len] = '\0';
    if (strlen(name) != h->name_len || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || !S_ISREG(h->mode))
        return -EINVAL;
    *what = name;
    int dir = open(dirs->dir[h->dir], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -errno;
    int out = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    err = out < 0 ? -errno : 0;
    (void)close(dir); /* O_PATH, ours: nothing to do if it fails */
    for (uint64_t left = h->size; err == 0 && left > 0;) {
        size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        if ((err = mosix_read_exact(fd, buf, n, EIO)) == 0)
            err = mosix_write_exact(out, buf, n);
        left -= n;
    }
    if (err == 0 && fchmod(out, h->mode & 07777) != 0)
        err = -errno;
    if (out >= 0 && close(out) != 0 && err == 0)
        err = -errno;
    return err;
}

int private_dirs_fill(const struct private_dirs *dirs, int fd, const char **what)
{
    int err = 0;
    for (;;) {
        struct private_file_head h;
        ssize_t n;
        do
            n = read(fd, &h, sizeof(h));
        while (n < 0 && errno == EINTR);
        if (n == 0)
            break;
        *what = "the private files";
        if (n < 0 || (size_t)n != sizeof(h)) {
            err = n < 0 ? -errno : -EIO;
            break;
        }
        char name[256];
        if ((err = fill_one(dirs, fd, &h, name, what)) != 0)
            break;
    }
    if (close(fd) != 0 && err == 0) {
        *what = "the private files";
        err = -errno;
    }
    return err;
}
