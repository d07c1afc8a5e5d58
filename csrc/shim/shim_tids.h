/* shim_tids.h - the calls naming a thread id, after a recovery (shim_tids.c). */
#ifndef MOSIX_SHIM_TIDS_H
#define MOSIX_SHIM_TIDS_H

#include <ucontext.h>

/* A call the restorer's thread id filter trapped (MOSIX_TID_TRAP_MAGIC), made
 * with the kernel's ids; its result in the context's rax. */
void shim_tids_call(ucontext_t *uc, long nr);

#endif
