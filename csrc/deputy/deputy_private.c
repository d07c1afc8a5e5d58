/* deputy_private.c - a moved process's private files (mosrun -X) leave home.
 *
 * They went with the process's image to where it runs and are served there;
 * the copies left at home, in the process's own tmpfs, are removed when the
 * deputy starts, so that home holds nothing of them while the process is away
 * (they come back with the image when it comes home). */
#include "deputy_private.h"

#include "private_mounts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *read_mountinfo(void)
{
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL)
            break;
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    (void)close(fd); /* read only: nothing to lose */
    return buf;
}

static void empty(const char *point, dev_t dev, void *ctx)
{
    (void)dev;
    int *failed = ctx;
    int dir = open(point, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = dir >= 0 ? fdopendir(dir) : NULL;
    if (d == NULL) {
        *failed = 1;
        if (dir >= 0)
            (void)close(dir);
        return;
    }
    struct dirent *e;
    while ((errno = 0, e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT)
            *failed = 1;
    }
    if (errno != 0 || closedir(d) != 0)
        *failed = 1;
}

int deputy_empty_private(void)
{
    char *info = read_mountinfo();
    if (info == NULL)
        return -1;
    int failed = 0;
    (void)private_mounts_each(info, empty, &failed);
    free(info);
    return failed ? -1 : 0;
}
