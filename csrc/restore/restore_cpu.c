/* restore_cpu.c - refuse a CPU that lacks what the image's program may use.
 *
 * A program (and its libc, through ifuncs chosen at start-up) uses the
 * instructions the capturing CPU offered; on a CPU without them it would die
 * of SIGILL later.  The XSAVE layout must be the same size, or the signal
 * frames the kernel builds would not match what the program was told
 * (AT_MINSIGSTKSZ). */
#include "restore.h"

struct cpuid {
    uint32_t a, b, c, d;
};

static struct cpuid cpuid(uint32_t leaf, uint32_t sub)
{
    struct cpuid r;
    __asm__ volatile("cpuid" : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d) : "a"(leaf), "c"(sub));
    return r;
}

/* Bits that say nothing about the instructions a program can use: system
 * features, topology, hypervisor, and speculation-control bits that vary
 * with microcode and virtual machines. */
#define IGNORE_1_ECX                                                                        \
    ((1u << 3) | (1u << 5) | (1u << 6) | (1u << 7) | (1u << 8) | (1u << 10) | (1u << 11) | \
     (1u << 14) | (1u << 15) | (1u << 18) | (1u << 21) | (1u << 24) | (1u << 31))
#define IGNORE_1_EDX                                                                          \
    ((1u << 1) | (1u << 2) | (1u << 3) | (1u << 5) | (1u << 6) | (1u << 7) | (1u << 9) |      \
     (1u << 12) | (1u << 13) | (1u << 14) | (1u << 16) | (1u << 17) | (1u << 18) | (1u << 21) | \
     (1u << 22) | (1u << 27) | (1u << 28) | (1u << 29) | (1u << 31))
#define IGNORE_7_EBX                                                                        \
    ((1u << 1) | (1u << 2) | (1u << 6) | (1u << 7) | (1u << 10) | (1u << 12) | (1u << 13) | \
     (1u << 15) | (1u << 20) | (1u << 25))
#define IGNORE_7_ECX ((1u << 2) | (1u << 13) | (1u << 16) | (1u << 30))
#define IGNORE_7_EDX                                                                          \
    ((1u << 10) | (1u << 11) | (1u << 13) | (1u << 15) | (1u << 18) | (1u << 20) | (1u << 26) | \
     (1u << 27) | (1u << 28) | (1u << 29) | (1u << 30) | (1u << 31))

#define OSXSAVE (1u << 27) /* CPUID.1:ECX: XGETBV usable */

__attribute__((noreturn)) static void lacks(const char *what, uint64_t image, uint64_t here)
{
    msg_begin();
    msg_str("this CPU lacks features the image uses (");
    msg_str(what);
    msg_str(" ");
    msg_hex(image);
    msg_str(" vs ");
    msg_hex(here);
    msg_str(")");
    msg_refuse();
}

static void check_word(const char *what, uint32_t image, uint32_t here, uint32_t ignore)
{
    if (image & ~here & ~ignore)
        lacks(what, image, here);
}

void cpu_check(const struct image *img)
{
    const struct mosix_ckpt_process *p = &img->proc;
    struct cpuid l1 = cpuid(1, 0);
    if (!(l1.c & OSXSAVE))
        lacks("cpuid 1 ecx", p->cpuid_1_ecx, l1.c);
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    uint64_t xcr0 = (uint64_t)hi << 32 | lo;
    if (p->xfeatures & ~xcr0)
        lacks("xfeatures", p->xfeatures, xcr0);
    struct cpuid l7 = cpuid(0, 0).a >= 7 ? cpuid(7, 0) : (struct cpuid){0, 0, 0, 0};
    check_word("cpuid 1 ecx", p->cpuid_1_ecx, l1.c, IGNORE_1_ECX);
    check_word("cpuid 1 edx", p->cpuid_1_edx, l1.d, IGNORE_1_EDX);
    check_word("cpuid 7 ebx", p->cpuid_7_ebx, l7.b, IGNORE_7_EBX);
    check_word("cpuid 7 ecx", p->cpuid_7_ecx, l7.c, IGNORE_7_ECX);
    check_word("cpuid 7 edx", p->cpuid_7_edx, l7.d, IGNORE_7_EDX);
    /* CPUID(0xD, 0).EBX: the XSAVE area size for the features XCR0 enables. */
    uint32_t size = cpuid(0xd, 0).b;
    if (p->xsave_size != size) {
        msg_begin();
        msg_str("this CPU's XSAVE area differs from the image's (");
        msg_dec(size);
        msg_str(" vs ");
        msg_dec(p->xsave_size);
        msg_str(" bytes)");
        msg_refuse();
    }
}

/* The MXCSR bits this CPU accepts (FXSAVE's mxcsr_mask; 0 means the
 * original 0xffbf). */
uint32_t cpu_mxcsr_mask(void)
{
    static unsigned char area[512] __attribute__((aligned(16)));
    uint32_t mask;
    __asm__ volatile("fxsave64 %0" : "=m"(area));
    __builtin_memcpy(&mask, area + 28, 4);
    return mask ? mask : 0xffbf;
}
