/* restore_payload.c - a program that is never started, only restored.
 *
 * tests/ckpt_images.py loads this static ELF (its PT_LOAD segments) into a
 * synthetic image with chosen registers, XSAVE state, signal state and kernel
 * bookkeeping; the restorer resumes it at _start, which records every register
 * as it finds it.  It then prints "key=value" lines about the state it runs in
 * (and the contents of some /proc files) for the test to compare with the
 * image, raises SIGUSR1 to show signal delivery works, and exits 0.
 *
 * r15 at entry holds the test's requests: bit 0 call syslog (unsupported
 * under the discipline: only survives if the shim's -e filter is back), bit 1
 * read the upper half of ymm0 (AVX).  No libc: raw system calls. */
#include <stddef.h>
#include <stdint.h>

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_getitimer 36
#define SYS_getpid 39
#define SYS_kill 62
#define SYS_syslog 103
#define SYS_sigaltstack 131
#define SYS_prctl 157
#define SYS_arch_prctl 158
#define SYS_get_robust_list 274
#define SYS_exit_group 231

#define SIGUSR1 10

struct entry_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15, rsp;
    uint64_t eflags, xmm0_lo, xmm0_hi;
    uint32_t mxcsr;
    uint16_t fcw, pad;
    uint64_t ymm0_hi_lo, ymm0_hi_hi;
} entry;

/* Found by the test with nm: */
volatile int32_t payload_tid = -1;                      /* the tid address */
uint32_t payload_rseq[8] __attribute__((aligned(32))) = {0, 0xffffffffu}; /* cpu_id: -1 */
uint64_t payload_robust[3];                             /* a robust list head */
uint64_t payload_tls[4] = {0x7465737473746c73ull};      /* fs points here: "sltstset" */
char payload_altstack[16384] __attribute__((aligned(16)));

static volatile int usr1_seen;
static volatile uint64_t usr1_sp;

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys(nr, a, b, c, d) sys6((nr), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

static char out[65536];
static size_t out_len;

static void put(const char *s)
{
    while (*s && out_len < sizeof(out))
        out[out_len++] = *s++;
}

static void put_hex(uint64_t v)
{
    char d[17];
    int n = 16;
    d[16] = '\0';
    do {
        d[--n] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    put("0x");
    put(d + n);
}

static void kv(const char *key, uint64_t v)
{
    put(key);
    put("=");
    put_hex(v);
    put("\n");
}

static void flush(void)
{
    size_t done = 0;
    while (done < out_len) {
        long n = sys(SYS_write, 1, out + done, out_len - done, 0);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    out_len = 0;
}

/* A /proc file between markers: "<<name\n...\n>>\n". */
static void dump(const char *path)
{
    static char buf[32768];
    long fd = sys(SYS_open, path, 0, 0, 0);
    put("<<");
    put(path);
    put("\n");
    if (fd >= 0) {
        long n, len = 0;
        while ((n = sys(SYS_read, fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
            len += n;
        buf[len] = '\0';
        for (long i = 0; i < len; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        put(buf);
        sys(SYS_close, fd, 0, 0, 0);
    }
    put("\n>>\n");
}

struct ksigaction {
    uint64_t handler, flags, restorer, mask;
};

static void show_action(const char *name, int sig)
{
    struct ksigaction a = {0, 0, 0, 0};
    long rc = sys(SYS_rt_sigaction, sig, 0, &a, 8);
    put(name);
    put("=");
    put_hex((uint64_t)rc);
    put(" ");
    put_hex(a.handler);
    put(" ");
    put_hex(a.flags);
    put(" ");
    put_hex(a.restorer);
    put(" ");
    put_hex(a.mask);
    put("\n");
}

void payload_usr1(int sig)
{
    usr1_seen = sig;
    usr1_sp = (uint64_t)__builtin_frame_address(0);
}

void payload_sigsys(int sig) { (void)sig; }

extern void payload_sigreturn(void);
__asm__(".globl payload_sigreturn\n"
        "payload_sigreturn:\n\t"
        "mov $15, %eax\n\t"
        "syscall\n\t"
        "ud2");

static void show_registers(void)
{
    const char *names[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
                           "r9",  "r10", "r11", "r12", "r13", "r14", "r15", "rsp"};
    const uint64_t *v = &entry.rax;
    for (int i = 0; i < 16; i++)
        kv(names[i], v[i]);
    kv("eflags", entry.eflags);
    kv("xmm0_lo", entry.xmm0_lo);
    kv("xmm0_hi", entry.xmm0_hi);
    kv("mxcsr", entry.mxcsr);
    kv("fcw", entry.fcw);
    kv("ymm0_hi_lo", entry.ymm0_hi_lo);
    kv("ymm0_hi_hi", entry.ymm0_hi_hi);
}

static void show_kernel_state(void)
{
    uint64_t v = 0, w = 0;
    sys(SYS_arch_prctl, 0x1003, &v, 0, 0); /* ARCH_GET_FS */
    kv("fs_base", v);
    uint64_t tls;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(tls));
    kv("fs_word", tls);
    sys(SYS_arch_prctl, 0x1004, &v, 0, 0); /* ARCH_GET_GS */
    kv("gs_base", v);
    sys(SYS_rt_sigprocmask, 0, 0, &v, 8);
    kv("sigmask", v);
    struct {
        uint64_t sp;
        int32_t flags, pad;
        uint64_t size;
    } ss = {0, 0, 0, 0};
    sys(SYS_sigaltstack, 0, &ss, 0, 0);
    kv("altstack_sp", ss.sp);
    kv("altstack_flags", (uint32_t)ss.flags);
    kv("altstack_size", ss.size);
    int64_t it[4];
    for (int which = 0; which < 3; which++) {
        sys(SYS_getitimer, which, it, 0, 0);
        put("itimer");
        put_hex((uint64_t)which);
        put("=");
        for (int i = 0; i < 4; i++) {
            put_hex((uint64_t)it[i]);
            put(i < 3 ? " " : "\n");
        }
    }
    char comm[17] = {0};
    sys(SYS_prctl, 16, comm, 0, 0); /* PR_GET_NAME */
    put("comm=");
    put(comm);
    put("\n");
    kv("pid", (uint64_t)sys(SYS_getpid, 0, 0, 0, 0));
    kv("tid_word", (uint64_t)(uint32_t)payload_tid);
    sys(SYS_get_robust_list, 0, &v, &w, 0);
    kv("robust_head", v);
    kv("robust_len", w);
    kv("rseq_cpu_id", payload_rseq[1]);
    show_action("sigusr1", SIGUSR1);
    show_action("sigusr2", 12);
    show_action("sigsys", 31);
}

static void raise_usr1(void)
{
    long rc = sys(SYS_kill, sys(SYS_getpid, 0, 0, 0, 0), SIGUSR1, 0, 0);
    kv("kill", (uint64_t)rc);
    kv("usr1_seen", (uint64_t)usr1_seen);
    kv("usr1_sp", usr1_sp);
}

__attribute__((noreturn, used)) void payload_main(void)
{
    show_registers();
    show_kernel_state();
    flush();
    if (entry.r15 & 1) {
        long rc = sys(SYS_syslog, 10, 0, 0, 0); /* SYSLOG_ACTION_SIZE_BUFFER */
        kv("syslog", (uint64_t)rc);
        flush();
    }
    raise_usr1();
    dump("/proc/self/status");
    dump("/proc/self/maps");
    dump("/proc/self/stat");
    dump("/proc/self/cmdline");
    dump("/proc/self/smaps_rollup");
    put("done\n");
    flush();
    sys(SYS_exit_group, 0, 0, 0, 0);
    __builtin_unreachable();
}

__asm__(".globl _start\n"
        "_start:\n\t"
        "mov %rax, entry+0(%rip)\n\t"
        "mov %rbx, entry+8(%rip)\n\t"
        "mov %rcx, entry+16(%rip)\n\t"
        "mov %rdx, entry+24(%rip)\n\t"
        "mov %rsi, entry+32(%rip)\n\t"
        "mov %rdi, entry+40(%rip)\n\t"
        "mov %rbp, entry+48(%rip)\n\t"
        "mov %r8, entry+56(%rip)\n\t"
        "mov %r9, entry+64(%rip)\n\t"
        "mov %r10, entry+72(%rip)\n\t"
        "mov %r11, entry+80(%rip)\n\t"
        "mov %r12, entry+88(%rip)\n\t"
        "mov %r13, entry+96(%rip)\n\t"
        "mov %r14, entry+104(%rip)\n\t"
        "mov %r15, entry+112(%rip)\n\t"
        "mov %rsp, entry+120(%rip)\n\t"
        "pushfq\n\t"
        "pop %rax\n\t"
        "mov %rax, entry+128(%rip)\n\t"
        "movq %xmm0, %rax\n\t"
        "mov %rax, entry+136(%rip)\n\t"
        "movhlps %xmm0, %xmm1\n\t"
        "movq %xmm1, %rax\n\t"
        "mov %rax, entry+144(%rip)\n\t"
        "stmxcsr entry+152(%rip)\n\t"
        "fnstcw entry+156(%rip)\n\t"
        "test $2, %r15\n\t"
        "jz 1f\n\t"
        "vextractf128 $1, %ymm0, %xmm1\n\t"
        "movq %xmm1, %rax\n\t"
        "mov %rax, entry+160(%rip)\n\t"
        "movhlps %xmm1, %xmm1\n\t"
        "movq %xmm1, %rax\n\t"
        "mov %rax, entry+168(%rip)\n"
        "1:\n\t"
        "and $-16, %rsp\n\t"
        "call payload_main\n\t"
        "ud2");
