/* guard_private.c - the guard's part of mosrun -X (guard_private.h).
 *
 * The guard shares the tree's mount namespace, so the private directories are
 * the file systems it finds mounted on them.  For a checked call it reads the
 * new name from the caller's memory (/proc/TID/mem), opens the name's
 * directory as the kernel would find it (through /proc/TID/cwd, /proc/TID/fd/N
 * or /proc/TID/root) and compares the file system.  The call itself then runs
 * in the caller (CONTINUE): a process that changes its own directories between
 * the check and the call only fools itself. */
#include "guard_private.h"

#include "mosix_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seccomp_table.h"

static dev_t private_dev[PRIVATE_DIRS_MAX];
static int private_count;

int guard_private_init(const struct private_dirs *dirs)
{
    for (int k = 0; k < dirs->count; k++) {
        struct stat st;
        if (stat(dirs->dir[k], &st) != 0)
            return -errno;
        private_dev[private_count++] = st.st_dev;
    }
    return 0;
}

static int is_private(dev_t dev)
{
    for (int k = 0; k < private_count; k++)
        if (private_dev[k] == dev)
            return 1;
    return 0;
}

/* The NUL-terminated string at ``addr`` in task ``tid``; 0, or -1 when it
 * cannot be read or is too long (the kernel then answers the call itself). */
static int read_name(pid_t tid, unsigned long long addr, char *out, size_t cap)
{
    char mem[48];
    snprintf(mem, sizeof(mem), "/proc/%d/mem", (int)tid);
    int fd = open(mem, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* a short read at the end of a mapping is fine: the NUL must be inside */
    ssize_t n = pread(fd, out, cap - 1, (off_t)addr);
    (void)close(fd); /* ours, read only: nothing to do if it fails */
    if (n <= 0 || memchr(out, '\0', (size_t)n) == NULL)
        return -1;
    return 0;
}

int guard_private_answer(int listener, const struct seccomp_notif *req,
                         struct seccomp_notif_resp *resp)
{
    const struct mosix_private_check *check = mosix_private_check_of(req->data.nr);
    if (check == NULL)
        return 0;
    resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    if (check->mode_arg >= 0) {
        unsigned type = (unsigned)req->data.args[check->mode_arg] & S_IFMT;
        if (type == 0 || type == S_IFREG)
            return 1; /* mknod of a regular file */
    }
    pid_t tid = (pid_t)req->pid;
    char name[PATH_MAX];
    if (read_name(tid, req->data.args[check->path_arg], name, sizeof(name)) != 0)
        return 1;
    /* the task is still the one that made the call (its id was not reused) */
    __u64 id = req->id;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) != 0)
        return 1;
    size_t len = strlen(name);
    while (len > 1 && name[len - 1] == '/')
        name[--len] = '\0';
    if (len == 0)
        return 1; /* ENOENT: the kernel's answer */
    char *slash = strrchr(name, '/');
    const char *parent = slash == NULL ? "." : slash == name ? "/" : name;
    if (slash != NULL && slash != name)
        *slash = '\0';
    char where[PATH_MAX + 64];
    int dirfd = check->dirfd_arg < 0 ? AT_FDCWD : (int)req->data.args[check->dirfd_arg];
    int n;
    if (parent[0] == '/')
        n = snprintf(where, sizeof(where), "/proc/%d/root%s", (int)tid, parent);
    else if (dirfd == AT_FDCWD)
        n = snprintf(where, sizeof(where), "/proc/%d/cwd/%s", (int)tid, parent);
    else
        n = snprintf(where, sizeof(where), "/proc/%d/fd/%d/%s", (int)tid, dirfd, parent);
    if (n < 0 || (size_t)n >= sizeof(where))
        return 1;
    int fd = open(where, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 1; /* the kernel finds the same problem and says it */
    struct stat st;
    int here = fstat(fd, &st) == 0 && is_private(st.st_dev);
    (void)close(fd); /* O_PATH, ours: nothing to do if it fails */
    if (here) {
        resp->flags = 0;
        resp->error = -EPERM;
    }
    return 1;
}
