/* remote_private_limit.c - the away maximum of the private files: see remote_private_limit.h. */
#include "remote_private_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/inotify.h>
#include <sys/statfs.h>
#include <unistd.h>

/* A private file closed: the one moment the process may go (no private descriptor
 * open), and after any growth (only a descriptor writes; a truncation by path makes
 * a sparse file).  Not each write (IN_MODIFY): that woke this process per write. */
#define RPL_EVENTS (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)

static int watch = -1;    /* the inotify instance */
static int dir_fd = -1;   /* the first directory: its tmpfs is all of them */
static uint64_t limit;    /* bytes */

int rpl_start(const struct private_dirs *dirs, unsigned long limit_mb, const char **what)
{
    if (dirs->count == 0 || limit_mb == 0)
        return -1;
    limit = (uint64_t)limit_mb << 20;
    *what = "inotify_init1";
    watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (watch < 0)
        return -errno;
    for (int k = 0; k < dirs->count; k++) {
        *what = dirs->dir[k];
        if (inotify_add_watch(watch, dirs->dir[k], RPL_EVENTS | IN_ONLYDIR) < 0)
            return -errno;
    }
    *what = dirs->dir[0];
    dir_fd = open(dirs->dir[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        return -errno;
    return watch;
}

int rpl_events(void)
{
    /* the events' kind does not matter: each says "look again" */
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(watch, buf, sizeof(buf));
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -errno;
        return 0;
    }
}

int rpl_over(void)
{
    if (dir_fd < 0)
        return 0;
    struct statfs fs;
    if (fstatfs(dir_fd, &fs) != 0)
        return -errno;
    uint64_t used = (uint64_t)(fs.f_blocks - fs.f_bfree) * (uint64_t)fs.f_bsize;
    return used > limit;
}
