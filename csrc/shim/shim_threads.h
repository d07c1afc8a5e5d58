/* shim_threads.h - the preload shim's per-thread state (shim_threads.c). */
#ifndef MOSIX_SHIM_THREADS_H
#define MOSIX_SHIM_THREADS_H

/* The program's idea of SIGSYS being blocked in this thread (signal masks are
 * per thread; the interposed sigprocmask/pthread_sigmask keep it). */
extern __thread int shim_sigsys_blocked __attribute__((tls_model("initial-exec")));

/* Set up at load, once the shim is active (its SIGSYS handler installed):
 * from then on every thread made by pthread_create gets its own alternate
 * signal stack.  Returns 0, or -1 (then threads run the handler on their own
 * stacks, as they would without it). */
int shim_threads_init(void);

#endif
