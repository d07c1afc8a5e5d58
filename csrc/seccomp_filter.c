/* seccomp_filter.c - the MOSIX discipline's filters, classifier and messages.
 *
 * The programs come from seccomp_table.h (generated from the policy table);
 * this file only fills in what is known at run time, interprets the
 * classifier for the guard and the shim's handler, and words the messages.
 * Everything here is free of libc calls so the shim's SIGSYS handler can use
 * it. */
#include "mosix_shim.h"

#include <errno.h>
#include <linux/audit.h>

#include "seccomp_table.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(LEN(mosix_private_prefix_prog) + LEN(mosix_base_prog) <= MOSIX_FILTER_MAX,
               "base filter too long");
_Static_assert(LEN(mosix_shim_prog_notify) <= MOSIX_FILTER_MAX, "shim filter too long");
_Static_assert(LEN(mosix_shim_prog_enosys) <= MOSIX_FILTER_MAX, "shim filter too long");

static size_t patch(const struct sock_filter *prog, size_t len,
                    const struct mosix_patch_site *sites, size_t nsites, const uint32_t values[],
                    struct sock_filter *out)
{
    for (size_t i = 0; i < len; i++)
        out[i] = prog[i];
    for (size_t i = 0; i < nsites; i++)
        out[sites[i].insn].k = values[sites[i].symbol];
    return len;
}

size_t mosix_filter_build(enum mosix_filter_kind kind, enum mosix_mode mode, uint64_t libc_lo,
                          uint64_t libc_hi, struct sock_filter out[MOSIX_FILTER_MAX])
{
    uint32_t values[5];
    values[MOSIX_PATCH_PROBE] = SECCOMP_RET_ERRNO | (uint32_t)(MOSIX_PROBE_ERRNO_BASE + mode);
    values[MOSIX_PATCH_LO_HI] = (uint32_t)(libc_lo >> 32);
    values[MOSIX_PATCH_LO_LO] = (uint32_t)libc_lo;
    values[MOSIX_PATCH_HI_HI] = (uint32_t)(libc_hi >> 32);
    values[MOSIX_PATCH_HI_LO] = (uint32_t)libc_hi;
    switch (kind) {
    case MOSIX_FILTER_BASE:
        return patch(mosix_base_prog, LEN(mosix_base_prog), mosix_base_prog_patches,
                     MOSIX_BASE_PROG_PATCHES, values, out);
    case MOSIX_FILTER_BASE_PRIVATE: {
        /* the prefix ends by falling through into the base filter's first insn */
        size_t head = LEN(mosix_private_prefix_prog);
        for (size_t i = 0; i < head; i++)
            out[i] = mosix_private_prefix_prog[i];
        return head + patch(mosix_base_prog, LEN(mosix_base_prog), mosix_base_prog_patches,
                            MOSIX_BASE_PROG_PATCHES, values, out + head);
    }
    case MOSIX_FILTER_SHIM_NOTIFY:
        return patch(mosix_shim_prog_notify, LEN(mosix_shim_prog_notify),
                     mosix_shim_prog_notify_patches, MOSIX_SHIM_PROG_NOTIFY_PATCHES, values, out);
    case MOSIX_FILTER_SHIM_ENOSYS:
        return patch(mosix_shim_prog_enosys, LEN(mosix_shim_prog_enosys),
                     mosix_shim_prog_enosys_patches, MOSIX_SHIM_PROG_ENOSYS_PATCHES, values, out);
    }
    return 0;
}

/* A classic-BPF interpreter for the instructions the generator emits. */
unsigned mosix_classify(const struct seccomp_data *sd)
{
    const unsigned char *data = (const unsigned char *)sd;
    const struct sock_filter *prog = mosix_classify_prog;
    size_t pc = 0;
    uint32_t a = 0;
    while (pc < LEN(mosix_classify_prog)) {
        const struct sock_filter *in = &prog[pc++];
        switch (in->code) {
        case BPF_LD | BPF_W | BPF_ABS:
            if (in->k > sizeof(*sd) - 4)
                return MOSIX_OUTCOME_UNSUPPORTED;
            __builtin_memcpy(&a, data + in->k, 4);
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            a &= in->k;
            break;
        case BPF_JMP | BPF_JA:
            pc += in->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += (a == in->k) ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JGT | BPF_K:
            pc += (a > in->k) ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_K:
            pc += (a >= in->k) ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (a & in->k) ? in->jt : in->jf;
            break;
        case BPF_RET | BPF_K:
            return in->k;
        default:
            return MOSIX_OUTCOME_UNSUPPORTED;
        }
    }
    return MOSIX_OUTCOME_UNSUPPORTED;
}

const struct mosix_private_check *mosix_private_check_of(long nr)
{
    for (size_t i = 0; i < LEN(mosix_private_checks); i++)
        if (mosix_private_checks[i].nr == nr)
            return &mosix_private_checks[i];
    return NULL;
}

const char *mosix_syscall_name(long nr)
{
    if (nr < 0 || nr > MOSIX_SYSCALL_MAX || mosix_syscall_names[nr] == NULL)
        return "?";
    return mosix_syscall_names[nr];
}

/* ------------------------------------------------------------- the mode */

enum mosix_mode mosix_mode_of_words(const char *w, size_t len, enum mosix_mode mode)
{
    const char *end = w + len;
    while (w < end) {
        while (w < end && *w == ' ')
            w++;
        const char *t = w;
        while (w < end && *w != ' ')
            w++;
        if (w - t == 2 && t[0] == '-') {
            if (t[1] == 'u')
                mode = MOSIX_MODE_KILL;
            else if (t[1] == 'e')
                mode = MOSIX_MODE_ENOSYS;
            else if (t[1] == 'w')
                mode = MOSIX_MODE_WARN;
        }
    }
    return mode;
}

enum mosix_mode mosix_mode_of(const char *env, size_t len, enum mosix_mode dflt)
{
    static const char key[] = MOSIX_INHERIT_ENV "=";
    const size_t klen = sizeof(key) - 1;
    const char *p = env, *end = env + len;
    while (p < end) {
        const char *entry = p;
        while (p < end && *p != '\0')
            p++;
        size_t n = (size_t)(p - entry);
        size_t i = 0;
        while (i < klen && i < n && entry[i] == key[i])
            i++;
        if (i == klen)
            return mosix_mode_of_words(entry + klen, n - klen, dflt);
        p++;
    }
    return dflt;
}

/* ------------------------------------------------------------- messages */

struct text {
    char *buf;
    size_t cap, len;
};

static void put(struct text *t, const char *s)
{
    while (*s && t->len + 1 < t->cap)
        t->buf[t->len++] = *s++;
    t->buf[t->len] = '\0';
}

static void put_long(struct text *t, long v)
{
    char digits[24];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        digits[n++] = '-';
    char s[24];
    for (int i = 0; i < n; i++)
        s[i] = digits[n - 1 - i];
    s[n] = '\0';
    put(t, s);
}

size_t mosix_message(char *buf, size_t cap, enum mosix_message kind, const char *comm, long pid,
                     long nr)
{
    struct text t = {buf, cap, 0};
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    put(&t, "mosrun: ");
    put(&t, comm);
    put(&t, "[");
    put_long(&t, pid);
    put(&t, "]: ");
    put(&t, "unsupported system call ");
    put(&t, mosix_syscall_name(nr));
    put(&t, " (");
    put_long(&t, nr);
    put(&t, kind == MOSIX_MSG_KILLED ? "): killed (mosrun -e lets it continue)\n"
                                     : "): fails with ENOSYS\n");
    return t.len;
}
