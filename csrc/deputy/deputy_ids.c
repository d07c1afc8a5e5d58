/* deputy_ids.c - identity calls for every thread of the deputy.
 *
 * The set*id calls are made through libc, whose wrappers change the
 * credentials of every thread of the process (they signal the others, as for
 * a threaded program); setgroups is executed as forwarded (forward.h), then
 * the same list is set through libc for every thread (this thread kept the
 * capability it needed). */
#include "deputy_ids.h"

#include "forward.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GROUPS_MAX 65536 /* NGROUPS_MAX of the kernel */

static gid_t groups[GROUPS_MAX];
static pthread_mutex_t groups_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t reply_result(unsigned char *rep, int64_t ret)
{
    struct fwd_reply head = {FWD_REPLY_MAGIC, 0, ret, 0, 0};
    memcpy(rep, &head, sizeof(head));
    return sizeof(head);
}

static int64_t result(int rc)
{
    return rc < 0 ? -(int64_t)errno : 0;
}

size_t deputy_id_call(const unsigned char *req, size_t len, unsigned char *rep, size_t cap)
{
    struct fwd_request head;
    if (len < sizeof(head) || cap < sizeof(struct fwd_reply))
        return 0;
    memcpy(&head, req, sizeof(head));
    if (head.magic != FWD_REQUEST_MAGIC)
        return 0;
    const uint64_t *a = head.args;
    switch (head.nr) {
    case SYS_setuid:
        return reply_result(rep, result(setuid((uid_t)a[0])));
    case SYS_setgid:
        return reply_result(rep, result(setgid((gid_t)a[0])));
    case SYS_setreuid:
        return reply_result(rep, result(setreuid((uid_t)a[0], (uid_t)a[1])));
    case SYS_setregid:
        return reply_result(rep, result(setregid((gid_t)a[0], (gid_t)a[1])));
    case SYS_setresuid:
        return reply_result(rep, result(setresuid((uid_t)a[0], (uid_t)a[1], (uid_t)a[2])));
    case SYS_setresgid:
        return reply_result(rep, result(setresgid((gid_t)a[0], (gid_t)a[1], (gid_t)a[2])));
    case SYS_setgroups: {
        size_t n = fwd_execute(req, len, rep, cap);
        if (fwd_reply_ret(rep, n) != 0)
            return n;
        if (pthread_mutex_lock(&groups_lock) != 0)
            return reply_result(rep, -EDEADLK);
        int count = getgroups(GROUPS_MAX, groups);
        int64_t err = count < 0 || setgroups((size_t)count, groups) < 0 ? -(int64_t)errno : 0;
        if (pthread_mutex_unlock(&groups_lock) != 0 && err == 0)
            err = -EDEADLK;
        return err ? reply_result(rep, err) : n;
    }
    default:
        return 0;
    }
}
