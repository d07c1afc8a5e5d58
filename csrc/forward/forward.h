/* forward.h - marshalling a migrated process's system calls to its home node.
 *
 * Used by both halves of a migrated process: the supervisor on the remote node
 * (fwd_placement, fwd_request, fwd_apply) and the deputy at home (fwd_execute).
 * Which calls go home and how each argument travels is decided by the
 * forwarding table (mosix/discipline/forwarding.py, generated into
 * forward_table.h); nothing here asks back for the remote's memory: a request
 * carries every input buffer and a reply every output buffer.
 *
 * Payloads are flat byte strings in host order (x86-64 on both sides), without
 * framing (the channel frames them, forward_wire.h).
 *
 * REQUEST (remote -> home), at most FWD_PAYLOAD_MAX bytes:
 *   struct fwd_request                 160 bytes
 *   data[data_len]                     data_len <= FWD_MAX_DATA
 * args[i] is the call's argument for value arguments (descriptors, flags,
 * pids: home ones), 0 for a dropped one, and 0 (null) or 1 for a pointer.  For
 * a pointer, span[i] says where its input is in data (off, in_len) and how
 * many bytes its output may take (out_len); unused spans are zero.  Each
 * argument's input starts 8-aligned.  The input of each kind:
 *   PATH     the string and its NUL (in_len <= 4096), out_len 0
 *   IN       the bytes (in_len = the table's size), out_len 0
 *   OUT      nothing, out_len = the table's size
 *   INOUT    the bytes, out_len = in_len
 *   IOV_IN   uint64_t len[n], then the n buffers' bytes one after another
 *            (n = the count argument, already clamped), out_len 0
 *   IOV_OUT  uint64_t len[n], out_len = the sum of len[]
 *   MSG_IN   struct fwd_msg, name[namelen], control[controllen],
 *            uint64_t len[iovlen], the data; out_len 0
 *   MSG_OUT  struct fwd_msg (capacities), uint64_t len[iovlen];
 *            out_len = sizeof(struct fwd_msg) + namelen + controllen + sum(len)
 * Sizes come from the table (a constant, another argument, the fd_set bytes
 * of nfds, or the socklen_t an INOUT(4) argument carries); the home side
 * recomputes every one and refuses a request whose spans differ (-EINVAL).
 *
 * REPLY (home -> remote), at most FWD_PAYLOAD_MAX bytes:
 *   struct fwd_reply                   24 bytes
 *   data[data_len]                     data_len <= FWD_MAX_DATA
 * ret is the call's result, or -errno.  When ret >= 0, data holds one segment
 * for each pointer argument with an output that was not null, in argument
 * order: struct fwd_out (arg, len), then len bytes, padded to 8.  When ret < 0
 * there are none.  len is at most the request's out_len:
 *   OUT/INOUT  the whole buffer; min(size, ret * unit) for the table's
 *              "only what the result says" buffers (read, getdents64, ...);
 *              min(capacity, the new socklen_t) for a socket address
 *   IOV_OUT    the first ret bytes, to be scattered over the iovecs
 *   MSG_OUT    struct fwd_msg (the results: namelen, controllen, flags),
 *              min(namelen capacity, namelen) name bytes, controllen control
 *              bytes, ret data bytes
 *
 * Limits: FWD_MAX_DATA bytes of data each way.  read/write-like counts
 * (read, write, pread64, pwrite64, the vector calls, sendto, recvfrom,
 * sendmsg, recvmsg, getdents*) are clamped to fit (a short read or write);
 * other buffers that do not fit fail with -E2BIG.  At most FWD_IOV_MAX iovecs
 * (-EINVAL beyond, -EMSGSIZE for a msghdr), socket addresses of 128 bytes and
 * control data of FWD_CONTROL_MAX bytes (sendmsg: -ENOBUFS beyond; recvmsg:
 * the capacity is cut, the kernel sets MSG_CTRUNC).  Control data is
 * forwarded as bytes: SCM_RIGHTS descriptors and SCM_CREDENTIALS pids are home
 * ones, as the process sees them. */
#ifndef MOSIX_FORWARD_H
#define MOSIX_FORWARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FWD_MAX_DATA (1u << 20) /* bytes of buffers in one request or reply */
#define FWD_HEAD_MAX 4096u      /* room for the fixed part of a payload */
#define FWD_PAYLOAD_MAX (FWD_MAX_DATA + FWD_HEAD_MAX) /* a buffer this big always does */
#define FWD_IOV_MAX 1024u                             /* iovecs of one call (UIO_MAXIOV) */
#define FWD_CONTROL_MAX 65536u                        /* control data of one msghdr */
#define FWD_SOCKADDR_MAX 128u                         /* struct sockaddr_storage */
#define FWD_FDSET_MAX_BITS 65536u                     /* select's nfds is clamped to this */

#define FWD_REQUEST_MAGIC 0x51445746u /* "FWDQ" */
#define FWD_REPLY_MAGIC 0x52445746u   /* "FWDR" */

enum fwd_placement {
    FWD_LOCAL,        /* runs on the remote node */
    FWD_HOME,         /* forwarded to the deputy */
    FWD_TIME,         /* a clock: forwarded unless the process runs with -t */
    FWD_BRING_HOME,   /* fork, clone, execve, ...: the process goes home first */
    FWD_FILE_MAP,     /* mmap of a file */
    FWD_UNFORWARDABLE, /* answered on the remote: fwd_request returns the errno */
    FWD_SPLIT          /* sendmmsg, recvmmsg: one forwarded sendmsg/recvmsg per message */
};

struct fwd_span {
    uint32_t off;     /* in data */
    uint32_t in_len;  /* input bytes at off */
    uint32_t out_len; /* output capacity */
    uint32_t reserved;
};

struct fwd_request {
    uint32_t magic; /* FWD_REQUEST_MAGIC */
    uint32_t nr;    /* the system call */
    uint64_t args[6];
    struct fwd_span span[6];
    uint32_t data_len;
    uint32_t reserved;
};

/* A reply's result for a call the deputy did not execute: its process is
 * leaving (HOLD) and the call was blocked at home; it ended with EINTR, having
 * done nothing.  The copy's call is left unanswered and is made again where
 * the process goes (the kernel's ERESTARTNOINTR, never a result). */
#define FWD_RET_AGAIN (-513)

struct fwd_reply {
    uint32_t magic; /* FWD_REPLY_MAGIC */
    uint32_t nouts; /* segments in data */
    int64_t ret;
    uint32_t data_len;
    uint32_t reserved;
};

struct fwd_out {
    uint32_t arg; /* the argument (0-5) */
    uint32_t len; /* bytes that follow (then padding to 8) */
};

#define FWD_MSG_NAME 1u    /* struct fwd_msg.present: msg_name was not null */
#define FWD_MSG_CONTROL 2u /* msg_control was not null */

struct fwd_msg {
    uint32_t namelen;    /* request: bytes (MSG_IN) or capacity (MSG_OUT); reply: the kernel's */
    uint32_t iovlen;     /* iovecs */
    uint64_t controllen; /* like namelen */
    uint32_t flags;      /* reply: msg_flags */
    uint32_t present;    /* FWD_MSG_* */
};

/* Where call (nr, args) runs on a remote node; applies the table's cases (ioctl
 * requests, fcntl commands, mmap's MAP_ANONYMOUS, clocks, ...).  Numbers the
 * table does not know: FWD_UNFORWARDABLE. */
enum fwd_placement fwd_placement(long nr, const uint64_t args[6]);

/* Whether the kernel makes call nr again after a handler with SA_RESTART (1),
 * or ends it with EINTR whenever a handler runs (0: poll, select, epoll_wait,
 * ...; signal(7)).  A copy away answers a call interrupted at home by it. */
int fwd_restarts_after_handler(long nr);

/* The kernel's restart codes (include/linux/errno.h, not in userspace headers):
 * a call that returns one with a signal pending is made again, or fails with
 * EINTR, as the signal's handler says (ERESTARTSYS: SA_RESTART restarts it;
 * ERESTARTNOHAND: a handler always ends it with EINTR). */
#define FWD_ERESTARTSYS 512
#define FWD_ERESTARTNOHAND 514
#define FWD_ERESTARTNOINTR 513 /* made again even after a handler: a call not executed */

/* Remote side: build the request for call (nr, args) of process pid, reading
 * its memory (process_vm_readv: the caller must be allowed to ptrace pid).
 * Returns the payload length (> 0), or a negative errno to answer locally:
 * -EFAULT (a buffer cannot be read), -E2BIG (a buffer beyond FWD_MAX_DATA
 * that cannot be clamped), -ENOBUFS (cap too small; FWD_PAYLOAD_MAX is always
 * enough), -EINVAL/-EMSGSIZE/-ENAMETOOLONG (as the kernel would say), the
 * table's errno for FWD_UNFORWARDABLE calls (-ENOSYS; -ENOTTY for ioctl
 * requests it does not know), -ENOSYS for calls that are not forwarded. */
long fwd_request(pid_t pid, long nr, const uint64_t args[6], void *buf, size_t cap);

/* Home side: execute a request natively in this process and write the reply;
 * returns its length (0 only when cap < sizeof(struct fwd_reply)).  Never
 * trusts the request: a malformed one gets a reply with -EINVAL.  A reply that
 * does not fit in cap gets -ENOBUFS (FWD_PAYLOAD_MAX is always enough).  No
 * allocation; up to ~20 KiB of stack. */
size_t fwd_execute(const void *req, size_t len, void *reply, size_t cap);

/* Remote side: copy the reply's output buffers into process pid's memory and
 * return the call's result (>= 0) or -errno: the call's own, -EFAULT if the
 * memory cannot be written, -EPROTO if the reply does not match the call. */
long fwd_apply(pid_t pid, long nr, const uint64_t args[6], const void *reply, size_t len);

/* Home side: the call a well-formed request asks for (its value arguments as
 * sent, pointers as 0/1), e.g. to serve calls on the deputy's own descriptors
 * differently.  Returns 0, or -EINVAL for a malformed request. */
int fwd_request_call(const void *req, size_t len, long *nr, uint64_t args[6]);

/* A reply's result (0 for one too short to have a head).  Inline, no libc:
 * the shim's signal handler uses it too. */
static inline int64_t fwd_reply_ret(const void *reply, size_t len)
{
    struct fwd_reply head;
    if (len < sizeof(head))
        return 0;
    __builtin_memcpy(&head, reply, sizeof(head));
    return head.ret;
}

/* Home side: a reply with result ret and no output buffers (ret < 0, or a call
 * without outputs).  Returns its length (0 when cap is too small). */
size_t fwd_reply_result(void *reply, size_t cap, int64_t ret);

#endif
