/* deputy_private.c - a moved process's private files (mosrun -X) leave home.
 *
 * They went with the process's image to where it runs and are served there;
 * the copies left at home, in the process's own tmpfs, are removed when the
 * deputy starts, so that home holds nothing of them while the process is away
 * (they come back with the image when it comes home). */
#include "deputy_private.h"

#include "private_mounts.h"
#include "read_whole.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    char *info = read_whole_file(AT_FDCWD, "/proc/self/mountinfo", NULL);
    if (info == NULL)
        return -1;
    int failed = 0;
    (void)private_mounts_each(info, empty, &failed);
    free(info);
    return failed ? -1 : 0;
}
