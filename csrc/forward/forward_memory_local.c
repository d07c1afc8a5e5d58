/* forward_memory_local.c - the marshaller's access to the process's memory
 * when it runs in that process (the preload shim's fast path): copied in
 * place, no libc function (forward_marshal.h). */
#include "forward_marshal.h"

#include <errno.h>
#include <string.h>

/* In the process itself: a bad pointer faults here (SIGSEGV) where the
 * kernel would have said EFAULT. */
int fwd_read_mem(pid_t pid, void *dst, uint64_t addr, size_t len)
{
    (void)pid;
    if (len)
        memcpy(dst, (const void *)(uintptr_t)addr, len);
    return 0;
}

int fwd_write_mem(pid_t pid, uint64_t addr, const void *src, size_t len)
{
    (void)pid;
    if (len)
        memcpy((void *)(uintptr_t)addr, src, len);
    return 0;
}

int fwd_vec_io(pid_t pid, int write, void *buf, size_t len, const struct iovec *iov, size_t n)
{
    (void)pid;
    unsigned char *b = buf;
    size_t left = len;
    for (size_t i = 0; i < n && left > 0; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        if (take == 0)
            continue;
        if (write)
            memcpy(iov[i].iov_base, b, take);
        else
            memcpy(b, iov[i].iov_base, take);
        b += take;
        left -= take;
    }
    return left == 0 ? 0 : -EFAULT;
}
