/* forward_marshal.h - what the parts of the marshaller share (its API is forward.h).
 *
 * One table (forward_table.h, generated from mosix/discipline/forwarding.py)
 * says for each call where it runs and what each argument is.  Both sides size
 * every buffer from it:
 *   remote  forward_request.c: plan() reads what the sizes depend on from the
 *           process (socklen_t values, iovec arrays, msghdrs) and clamps
 *           read/write-like counts; fwd_request() copies the inputs,
 *           fwd_apply() writes the outputs;
 *   home    forward_execute.c: fwd_execute() recomputes each size from the
 *           request's own values and checks every span against it before the
 *           kernel sees a pointer.
 * forward_marshal.c has the table's lookups and the buffer sizes.  The remote
 * side reaches the process's memory through one of two files:
 *   forward_memory_vm.c     another process's, with process_vm_readv/writev
 *                           (mosix-remote);
 *   forward_memory_local.c  the caller's own, copied in place (the preload
 *                           shim's fast path, which marshals its own calls in
 *                           its SIGSYS handler): the pid arguments are unused
 *                           and no libc function is called (the shim has its
 *                           own memcpy and friends, shim_mem.c). */
#ifndef MOSIX_FORWARD_MARSHAL_H
#define MOSIX_FORWARD_MARSHAL_H

#include "forward.h"
#include "forward_table.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)
#define IS_OUTPUT(k)                                                                          \
    ((k) == FWD_KIND_OUT || (k) == FWD_KIND_INOUT || (k) == FWD_KIND_IOV_OUT ||              \
     (k) == FWD_KIND_MSG_OUT)
#define IS_POINTER(k) ((k) != FWD_KIND_NONE && (k) != FWD_KIND_VAL && (k) != FWD_KIND_DROP)

/* forward_marshal.c: the table */
const struct fwd_entry *fwd_lookup(long nr, const uint64_t args[6]);
int fwd_forwarded(const struct fwd_entry *e); /* it runs at home */
int fwd_buffer_size(const struct fwd_arg *d, const uint64_t args[6], uint32_t lenval,
                    size_t *out);

/* forward_memory_vm.c or forward_memory_local.c: process pid's memory.
 * 0 or -errno (-EFAULT for memory that is not there). */
int fwd_read_mem(pid_t pid, void *dst, uint64_t addr, size_t len);
int fwd_write_mem(pid_t pid, uint64_t addr, const void *src, size_t len);
/* The first len bytes of iovecs iov[0..n) to or from one contiguous buffer. */
int fwd_vec_io(pid_t pid, int write, void *buf, size_t len, const struct iovec *iov, size_t n);

#endif
