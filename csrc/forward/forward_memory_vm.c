/* forward_memory_vm.c - the marshaller's access to another process's memory
 * (mosix-remote's supervised process), with process_vm_readv/writev
 * (forward_marshal.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "forward_marshal.h"

#include <errno.h>
#include <sys/uio.h>

static int vm_error(ssize_t got, size_t want)
{
    if (got < 0)
        return errno == EFAULT ? -EFAULT : -errno;
    return (size_t)got == want ? 0 : -EFAULT;
}

int fwd_read_mem(pid_t pid, void *dst, uint64_t addr, size_t len)
{
    if (len == 0)
        return 0;
    struct iovec local = {dst, len}, remote = {(void *)(uintptr_t)addr, len};
    return vm_error(process_vm_readv(pid, &local, 1, &remote, 1, 0), len);
}

int fwd_write_mem(pid_t pid, uint64_t addr, const void *src, size_t len)
{
    if (len == 0)
        return 0;
    struct iovec local = {(void *)(uintptr_t)src, len}, remote = {(void *)(uintptr_t)addr, len};
    return vm_error(process_vm_writev(pid, &local, 1, &remote, 1, 0), len);
}

/* The first len bytes of iovecs iov[0..n) to or from one contiguous buffer. */
int fwd_vec_io(pid_t pid, int write, void *buf, size_t len, const struct iovec *iov, size_t n)
{
    struct iovec local = {buf, len};
    struct iovec remote[FWD_IOV_MAX];
    size_t k = 0, left = len;
    for (size_t i = 0; i < n && left > 0; i++) {
        size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
        if (take == 0)
            continue;
        remote[k].iov_base = iov[i].iov_base;
        remote[k++].iov_len = take;
        left -= take;
    }
    if (left != 0)
        return -EFAULT;
    if (len == 0)
        return 0;
    ssize_t got = write ? process_vm_writev(pid, &local, 1, remote, k, 0)
                        : process_vm_readv(pid, &local, 1, remote, k, 0);
    return vm_error(got, len);
}
