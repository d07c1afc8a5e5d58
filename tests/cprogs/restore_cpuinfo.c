/* restore_cpuinfo.c - this CPU's facts a checkpoint image records, for the
 * tests' synthetic images (tests/ckpt_images.py): "name value" lines. */
#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>

int main(void)
{
    unsigned a, b, c, d, a7 = 0, b7 = 0, c7 = 0, d7 = 0;
    __cpuid(1, a, b, c, d);
    unsigned c1 = c, d1 = d;
    if (__get_cpuid_max(0, 0) >= 7)
        __cpuid_count(7, 0, a7, b7, c7, d7);
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    __cpuid_count(0xd, 0, a, b, c, d);
    unsigned size = b;
    __cpuid_count(0xd, 2, a, b, c, d);
    printf("xcr0 %llu\n", (unsigned long long)hi << 32 | lo);
    printf("xsave_size %u\n", size);
    printf("avx_offset %u\n", b);
    printf("cpuid_1_ecx %u\ncpuid_1_edx %u\n", c1, d1);
    printf("cpuid_7_ebx %u\ncpuid_7_ecx %u\ncpuid_7_edx %u\n", b7, c7, d7);
    (void)a7;
    return 0;
}
