/* remote_mmsg.c - sendmmsg and recvmmsg as one forwarded call per message: see remote_mmsg.h. */
#include "remote_mmsg.h"

#include "forward.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

_Static_assert(sizeof(struct mmsghdr) == 64 && offsetof(struct mmsghdr, msg_len) == 56,
               "mmsghdr layout");

/* The call ends with error: the messages done so far, or error when none was. */
static void end(struct mmsg_split *m, long error)
{
    m->result = m->done ? (long)m->done : error;
    m->ended = 1;
}

void mmsg_begin(struct mmsg_split *m, long nr, const uint64_t args[6])
{
    memset(m, 0, sizeof(*m));
    m->recv = nr == SYS_recvmmsg;
    m->fd = args[0];
    m->vec = args[1];
    m->vlen = (unsigned)args[2] > UIO_MAXIOV ? UIO_MAXIOV : (unsigned)args[2];
    m->flags = (unsigned)args[3];
}

long mmsg_next(struct mmsg_split *m, pid_t pid, void *buf, size_t cap)
{
    if (m->ended)
        return 0;
    if (m->done >= m->vlen) {
        m->result = m->done;
        m->ended = 1;
        return 0;
    }
    uint64_t flags = m->flags & ~(uint64_t)MSG_WAITFORONE;
    if (m->recv && m->done > 0 && (m->flags & MSG_WAITFORONE))
        flags |= MSG_DONTWAIT;
    uint64_t args[6] = {m->fd, m->vec + (uint64_t)m->done * sizeof(struct mmsghdr), flags, 0, 0,
                        0};
    m->nr = m->recv ? SYS_recvmsg : SYS_sendmsg;
    memcpy(m->args, args, sizeof(args));
    long len = fwd_request(pid, m->nr, args, buf, cap);
    if (len < 0) { /* this message cannot go: the call ends here */
        end(m, len);
        return 0;
    }
    return len;
}

void mmsg_reply(struct mmsg_split *m, pid_t pid, const void *reply, size_t len)
{
    long ret = fwd_apply(pid, m->nr, m->args, reply, len);
    if (ret < 0) {
        end(m, ret);
        return;
    }
    uint32_t msg_len = (uint32_t)ret;
    struct iovec local = {&msg_len, sizeof(msg_len)};
    struct iovec remote = {
        (void *)(uintptr_t)(m->args[1] + offsetof(struct mmsghdr, msg_len)), sizeof(msg_len)};
    if (process_vm_writev(pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(msg_len)) {
        end(m, -EFAULT);
        return;
    }
    m->done++;
}

long mmsg_cut(const struct mmsg_split *m)
{
    return m->done ? (long)m->done : -1;
}
