/* native_state.c - the caller's directory, umask and limits for `native`
 * (see native_state.h). */
#include "native_state.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void native_state_init(struct native_state *s)
{
    s->dir_fd = -1;
    s->dir_path = NULL;
    s->umask = -1;
    s->nlimits = 0;
}

/* A whole unsigned number in ``base`` up to ``max``; 0 on success. */
static int number(const char *text, int base, unsigned long long max, unsigned long long *out)
{
    if (*text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, base);
    if (errno != 0 || end == text || *end != '\0' || value > max)
        return -1;
    *out = value;
    return 0;
}

static int limit_option(struct native_state *s, const char *value)
{
    char text[64];
    if (strlen(value) >= sizeof(text) || s->nlimits >= NATIVE_LIMITS_MAX)
        return -1;
    strcpy(text, value);
    char *soft = strchr(text, ':');
    char *hard = soft ? strchr(soft + 1, ':') : NULL;
    if (soft == NULL || hard == NULL)
        return -1;
    *soft++ = '\0';
    *hard++ = '\0';
    unsigned long long resource, soft_value, hard_value;
    if (number(text, 10, NATIVE_LIMITS_MAX - 1, &resource) < 0 ||
        number(soft, 10, ULLONG_MAX, &soft_value) < 0 ||
        number(hard, 10, ULLONG_MAX, &hard_value) < 0 || soft_value > hard_value)
        return -1;
    struct native_limit *l = &s->limits[s->nlimits++];
    l->resource = (int)resource;
    l->limit.rlim_cur = (rlim_t)soft_value;
    l->limit.rlim_max = (rlim_t)hard_value;
    return 1;
}

int native_state_option(struct native_state *s, const char *opt, const char *value)
{
    unsigned long long n;
    if (strcmp(opt, "-c") == 0) {
        if (number(value, 10, INT_MAX, &n) < 0 || n <= 2)
            return -1;
        s->dir_fd = (int)n;
        return 1;
    }
    if (strcmp(opt, "-d") == 0) {
        if (value[0] != '/')
            return -1;
        s->dir_path = value;
        return 1;
    }
    if (strcmp(opt, "-k") == 0) {
        if (number(value, 8, 0777, &n) < 0)
            return -1;
        s->umask = (int)n;
        return 1;
    }
    if (strcmp(opt, "-l") == 0)
        return limit_option(s, value);
    return 0;
}

int native_state_apply(const struct native_state *s, const char **what)
{
    if (s->dir_fd >= 0) {
        *what = "cannot enter the caller's directory";
        if (fchdir(s->dir_fd) < 0)
            return -errno;
        *what = "cannot close the caller's directory";
        if (close(s->dir_fd) < 0)
            return -errno;
    }
    if (s->dir_path != NULL) {
        *what = "cannot enter the batch job's directory";
        if (chdir(s->dir_path) < 0)
            return -errno;
    }
    if (s->umask >= 0)
        (void)umask((mode_t)s->umask); /* umask cannot fail */
    for (unsigned i = 0; i < s->nlimits; i++) {
        *what = "cannot set the caller's resource limits";
        if (setrlimit(s->limits[i].resource, &s->limits[i].limit) < 0)
            return -errno;
    }
    return 0;
}
