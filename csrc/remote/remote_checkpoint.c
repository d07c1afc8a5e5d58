/* remote_checkpoint.c - the copy's own checkpoint call, away from home (remote_checkpoint.h). */
#include "remote_checkpoint.h"

#include "mosix_names.h"
#include "seccomp_table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PATH_BYTES 4096    /* a file name and its NUL */
#define KEEP_MS 10000      /* an answer waits this long for the call made again */
#define OP_CHECKPOINT 1
#define OP_SET_FILE 2
#define OP_SET_INTERVAL 4

static struct {
    int asked;   /* the agent was asked, no answer yet */
    int kept;    /* answered, for the call made again */
    uint64_t id; /* the newest notification of the call */
    uint64_t op, arg;
    long result;
    long until_ms; /* kept: until then */
} req;

static long now_ms(void)
{
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) < 0)
        return 0; /* CLOCK_MONOTONIC does not fail; an answer is then kept longer */
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* The NUL-terminated name at ``addr`` in ``pid`` (split at the page boundary,
 * so a name ending just before an unmapped page is read).  0 or an errno. */
static int read_name(pid_t pid, uint64_t addr, char out[PATH_BYTES])
{
    size_t first = PATH_BYTES - (size_t)(addr % PATH_BYTES);
    struct iovec local = {out, PATH_BYTES};
    struct iovec remote[2] = {{(void *)(uintptr_t)addr, first},
                              {(void *)(uintptr_t)(addr + first), PATH_BYTES - first}};
    ssize_t n = process_vm_readv(pid, &local, 1, remote, first == PATH_BYTES ? 1 : 2, 0);
    if (n < 0)
        return errno == ESRCH ? ECANCELED : errno;
    if (memchr(out, '\0', (size_t)n) == NULL)
        return n == PATH_BYTES ? ENAMETOOLONG : EFAULT;
    return out[0] == '\0' ? EINVAL : 0;
}

int rc_is_checkpoint_call(long nr)
{
    return nr == MOSIX_CHECKPOINT_NR;
}

enum rc_step rc_call(const struct seccomp_notif *n, char *line, size_t cap, long *result)
{
    uint64_t op = n->data.args[0], arg = n->data.args[1];
    if (req.kept && now_ms() > req.until_ms)
        req.kept = 0; /* the call never came again */
    if ((req.asked || req.kept) && op == req.op && arg == req.arg) {
        if (req.asked) {
            req.id = n->id; /* the same call, made again after the capture */
            return RC_WAIT;
        }
        req.kept = 0;
        *result = req.result;
        return RC_ANSWER;
    }
    req.kept = 0;
    if (req.asked) {
        *result = -EAGAIN;
        return RC_ANSWER;
    }
    if (op < OP_CHECKPOINT || op > OP_SET_INTERVAL || (op > OP_SET_FILE && arg > 0x7fffffff)) {
        *result = -EINVAL;
        return RC_ANSWER;
    }
    int len = snprintf(line, cap, MOSIX_REMOTE_LINE_CHECKPOINT " %llu ", (unsigned long long)op);
    if (len < 0 || cap < RC_LINE_MAX) {
        *result = -ENOBUFS;
        return RC_ANSWER;
    }
    if (op == OP_SET_FILE) {
        char name[PATH_BYTES];
        int err = read_name((pid_t)n->pid, arg, name);
        if (err != 0) {
            *result = -err;
            return RC_ANSWER;
        }
        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
            len += snprintf(line + len, cap - (size_t)len, "%02x", *p);
    } else {
        snprintf(line + len, cap - (size_t)len, "%llu",
                 op == OP_CHECKPOINT ? 0ULL : (unsigned long long)arg);
    }
    req.asked = 1;
    req.id = n->id;
    req.op = op;
    req.arg = arg;
    return RC_ASK;
}

int rc_answer(const char *text, uint64_t *id, long *result)
{
    if (!req.asked)
        return 0;
    char *end;
    long r = strtol(text, &end, 10);
    req.asked = 0;
    req.result = (*end != '\0' || r > 0 || r < -4095) ? -ECANCELED : r;
    *id = req.id;
    *result = req.result;
    return 1;
}

void rc_keep(long result)
{
    req.kept = 1;
    req.result = result;
    req.until_ms = now_ms() + KEEP_MS;
}
