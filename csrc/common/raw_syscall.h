/* raw_syscall.h - system calls without libc (usable in a signal handler).
 *
 * Returns the kernel's result: a negative errno on failure, errno untouched. */
#ifndef MOSIX_RAW_SYSCALL_H
#define MOSIX_RAW_SYSCALL_H

static inline long mosix_raw6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define mosix_raw0(nr) mosix_raw6((nr), 0, 0, 0, 0, 0, 0)
#define mosix_raw1(nr, a) mosix_raw6((nr), (long)(a), 0, 0, 0, 0, 0)
#define mosix_raw2(nr, a, b) mosix_raw6((nr), (long)(a), (long)(b), 0, 0, 0, 0)
#define mosix_raw3(nr, a, b, c) mosix_raw6((nr), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define mosix_raw4(nr, a, b, c, d) \
    mosix_raw6((nr), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* Kernel layout of struct sigaction for a raw rt_sigaction. */
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

#endif
