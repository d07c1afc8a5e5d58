/* private_mounts.c - the private temporary directories of a process: see private_mounts.h. */
#include "private_mounts.h"

#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>

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

int private_mounts_each(char *info, void (*each)(const char *point, dev_t dev, void *ctx),
                        void *ctx)
{
    int count = 0;
    char *save = NULL;
    for (char *line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
        unsigned major, minor;
        char point[4096], fstype[64], source[64];
        const char *tail = strstr(line, " - ");
        if (tail == NULL || sscanf(line, "%*u %*u %u:%u %*s %4095s", &major, &minor, point) != 3 ||
            sscanf(tail, " - %63s %63s", fstype, source) != 2)
            continue;
        if (strcmp(fstype, "tmpfs") != 0 || strcmp(source, MOSIX_PRIVATE_MOUNT_SOURCE) != 0)
            continue;
        unescape(point);
        if (point[0] != '/' || point[1] == '\0')
            continue;
        each(point, makedev(major, minor), ctx);
        count++;
    }
    return count;
}
