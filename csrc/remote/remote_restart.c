/* remote_restart.c - the notifications whose threads wait for an answer,
 * and a call made again (remote_restart.h). */
#include "remote_restart.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

struct waiting {
    uint64_t id;
    pid_t tid;
};

static struct waiting *waiting;
static size_t nwaiting, cap;

void waiting_add(uint64_t id, pid_t tid)
{
    if (nwaiting == cap) {
        size_t more = cap ? cap * 2 : 8;
        struct waiting *h = realloc(waiting, more * sizeof(*h));
        if (!h)
            abort(); /* a few entries, one a thread: no memory left at all */
        waiting = h;
        cap = more;
    }
    waiting[nwaiting].id = id;
    waiting[nwaiting].tid = tid;
    nwaiting++;
}

void waiting_remove(uint64_t id)
{
    for (size_t i = 0; i < nwaiting; i++)
        if (waiting[i].id == id) {
            waiting[i] = waiting[--nwaiting];
            return;
        }
}

pid_t waiting_tid(uint64_t id)
{
    for (size_t i = 0; i < nwaiting; i++)
        if (waiting[i].id == id)
            return waiting[i].tid;
    return 0;
}

size_t waiting_count(void)
{
    return nwaiting;
}

uint64_t waiting_id(size_t i)
{
    return waiting[i].id;
}

/* Let thread tid go from its stop; a signal it stopped for goes with it. */
static int let_go(pid_t tid, int st)
{
    int sig = (st >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(st);
    if (ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)sig) < 0 && errno != ESRCH)
        return -1;
    return 1;
}

int rr_restart(int listener, uint64_t id, pid_t tid, long code, int *status)
{
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0) {
        if (errno != ESRCH)
            return -1;
        waiting_remove(id); /* the thread is gone, and its call with it */
        return 1;
    }
    /* A trap pending: the thread stops there on its way out of the call (the
     * kernel acts on the restart code only when something is pending); its
     * killable wait is not woken. */
    if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0 && errno != ESRCH)
        return -1;
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof(resp));
    resp.id = id;
    resp.error = (int32_t)-code;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
        return -1; /* ENOENT: the thread is being killed; it ends below */
    waiting_remove(id);
    for (;;) {
        int st;
        pid_t r = waitpid(tid, &st, __WALL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == ECHILD ? 1 : -1;
        if (WIFEXITED(st) || WIFSIGNALED(st)) {
            *status = st;
            return 0;
        }
        if (WIFSTOPPED(st))
            return let_go(tid, st);
    }
}
