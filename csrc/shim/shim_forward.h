/* shim_forward.h - the preload shim's fast path for forwarded calls (shim_forward.c). */
#ifndef MOSIX_SHIM_FORWARD_H
#define MOSIX_SHIM_FORWARD_H

#include <stdint.h>

enum shim_forward_outcome {
    SHIM_FORWARD_DONE, /* *ret is the call's result */
    SHIM_FORWARD_AGAIN /* issue the call again: no direct channel (any more), or a
                        * signal interrupted it at home and the kernel restarts it */
};

/* Call nr(args), trapped with FWD_TRAP_MAGIC, executed by the deputy at home;
 * program_mask: the signals the program blocks (the handler's ucontext).
 * No libc: for the SIGSYS handler. */
enum shim_forward_outcome shim_forward_call(long nr, const uint64_t args[6],
                                            uint64_t program_mask, long *ret);

/* Calls that took the fast path (exported: a program may read it). */
extern unsigned long mosix_shim_fast_calls;

#endif
