/* private_dirs.c - mosrun -X{/dir}: a private tmpfs on each directory. */
#include "private_dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* Per directory: at most half of the node's memory, the kernel's tmpfs default,
 * written out so that no mount option of the system changes it. */
#define PRIVATE_TMPFS_SIZE "50%"

int private_dirs_add(struct private_dirs *dirs, const char *dir)
{
    if (dirs->count >= PRIVATE_DIRS_MAX)
        return -1;
    dirs->dir[dirs->count++] = dir;
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
    for (int k = 0; k < dirs->count; k++) {
        char options[128];
        snprintf(options, sizeof(options), "size=%s,mode=0700,uid=%u,gid=%u", PRIVATE_TMPFS_SIZE,
                 (unsigned)uid, (unsigned)gid);
        *what = dirs->dir[k];
        if (mount("mosix-private", dirs->dir[k], "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
            return -errno;
    }
    return 0;
}
