/* process_mode.c - the unsupported-call mode a process asked for, read from
 * /proc/PID/environ (its MOSIX_INHERIT's last -u/-e/-w word).  Used by the
 * guard at home (mosix_guard.c) and by mosix-remote for a copy
 * (remote_discipline.c), so both answer the same process the same way; and
 * mosix_read_proc, the reading of a /proc file both use. */
#include "mosix_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ENVIRON_MAX (256 * 1024)

long mosix_read_proc(int pid, const char *name, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < cap) {
        ssize_t n = read(fd, out + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    (void)close(fd); /* ours, read only: nothing to do if it fails */
    return (long)len;
}

enum mosix_mode mosix_mode_of_process(int pid, enum mosix_mode dflt)
{
    static char *env; /* one buffer, kept for the process's life */
    if (env == NULL && (env = malloc(ENVIRON_MAX)) == NULL)
        return dflt;
    long len = mosix_read_proc(pid, "environ", env, ENVIRON_MAX);
    return len < 0 ? dflt : mosix_mode_of(env, (size_t)len, dflt);
}
