/* native_state.h - what `native` takes from its caller besides the environment
 * and descriptors: the directory, the umask and the resource limits.
 *
 * The node agent (mosix/home_agent/native_start.py) reads them from the kernel
 * (the caller's directory arrives as a descriptor; umask and limits from
 * /proc and prlimit) and starts mosix-exec as the caller, in mode n, with
 *   -c FD               enter the directory open at FD (then close FD)
 *   -d /PATH            enter the directory PATH (a batch job's, mosrun -E/-M:
 *                       the launcher already runs as the user, so it is the
 *                       user's path resolved with the user's rights)
 *   -k OCTAL            the umask
 *   -l RES:SOFT:HARD    one resource limit (repeatable; decimal numbers)
 * This file parses those options and applies them, as the caller, before the
 * program is executed. */
#ifndef MOSIX_NATIVE_STATE_H
#define MOSIX_NATIVE_STATE_H

#include <sys/resource.h>

#define NATIVE_LIMITS_MAX 16 /* RLIMIT_CPU .. RLIMIT_RTTIME */

struct native_limit {
    int resource;
    struct rlimit limit;
};

struct native_state {
    int dir_fd;           /* -1: stay */
    const char *dir_path; /* NULL: stay */
    int umask;  /* -1: keep */
    unsigned nlimits;
    struct native_limit limits[NATIVE_LIMITS_MAX];
};

void native_state_init(struct native_state *s);

/* -c, -k or -l with its value: 1 taken, 0 not one of these, -1 a bad value. */
int native_state_option(struct native_state *s, const char *opt, const char *value);

/* Apply everything given; 0, or -errno with *what naming the step that failed. */
int native_state_apply(const struct native_state *s, const char **what);

#endif
