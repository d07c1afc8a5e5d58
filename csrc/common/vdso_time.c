/* vdso_time.c - the clock functions of the vDSO (see vdso_time.h). */
#include "vdso_time.h"

#include <asm/unistd_64.h>
#include <linux/elf.h>

/* The clock functions by name (without "__vdso_"); the aliases share an address. */
static const struct {
    const char *name;
    uint32_t nr;
} clocks[] = {
    {"clock_gettime", __NR_clock_gettime},
    {"gettimeofday", __NR_gettimeofday},
    {"time", __NR_time},
    {"clock_getres", __NR_clock_getres},
};

static int name_is(const unsigned char *s, size_t room, const char *want)
{
    size_t i = 0;
    for (; want[i]; i++)
        if (i >= room || s[i] != (unsigned char)want[i])
            return 0;
    return i < room && s[i] == 0;
}

/* The clock's system call number for symbol name (room bytes available), 0 if none. */
static uint32_t clock_of(const unsigned char *name, size_t room)
{
    static const char prefix[] = "__vdso_";
    size_t skip = 0;
    while (skip < sizeof(prefix) - 1 && skip < room && name[skip] == (unsigned char)prefix[skip])
        skip++;
    if (skip != sizeof(prefix) - 1)
        skip = 0;
    for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++)
        if (name_is(name + skip, room - skip, clocks[i].name))
            return clocks[i].nr;
    return 0;
}

static void copy_bytes(void *to, const void *from, size_t n)
{
    unsigned char *t = to;
    const unsigned char *f = from;
    for (size_t i = 0; i < n; i++)
        t[i] = f[i];
}

static int fits(uint64_t off, uint64_t n, size_t len)
{
    return off <= len && n <= len - off;
}

int vdso_time_entries(const unsigned char *vdso, size_t len, struct vdso_entry *out)
{
    Elf64_Ehdr eh;
    if (!fits(0, sizeof(eh), len))
        return -1;
    copy_bytes(&eh, vdso, sizeof(eh));
    if (eh.e_ident[EI_MAG0] != ELFMAG0 || eh.e_ident[EI_MAG1] != ELFMAG1 ||
        eh.e_ident[EI_MAG2] != ELFMAG2 || eh.e_ident[EI_MAG3] != ELFMAG3 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN ||
        eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_phentsize != sizeof(Elf64_Phdr) ||
        !fits(eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr), len) ||
        !fits(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), len))
        return -1;
    /* Symbol values are link addresses: the first PT_LOAD maps file offset p_offset there. */
    int64_t bias = 0;
    int have_load = 0;
    for (unsigned i = 0; i < eh.e_phnum && !have_load; i++) {
        Elf64_Phdr ph;
        copy_bytes(&ph, vdso + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_LOAD) {
            bias = (int64_t)ph.p_vaddr - (int64_t)ph.p_offset;
            have_load = 1;
        }
    }
    if (!have_load)
        return -1;
    int n = 0;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        Elf64_Shdr sym_sh, str_sh;
        copy_bytes(&sym_sh, vdso + eh.e_shoff + i * sizeof(sym_sh), sizeof(sym_sh));
        if (sym_sh.sh_type != SHT_DYNSYM)
            continue;
        if (sym_sh.sh_entsize != sizeof(Elf64_Sym) || sym_sh.sh_link >= eh.e_shnum ||
            !fits(sym_sh.sh_offset, sym_sh.sh_size, len))
            return -1;
        copy_bytes(&str_sh, vdso + eh.e_shoff + sym_sh.sh_link * sizeof(str_sh), sizeof(str_sh));
        if (!fits(str_sh.sh_offset, str_sh.sh_size, len))
            return -1;
        for (uint64_t s = 0; s < sym_sh.sh_size / sizeof(Elf64_Sym); s++) {
            Elf64_Sym sym;
            copy_bytes(&sym, vdso + sym_sh.sh_offset + s * sizeof(sym), sizeof(sym));
            if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
                sym.st_name >= str_sh.sh_size)
                continue;
            uint32_t nr = clock_of(vdso + str_sh.sh_offset + sym.st_name,
                                   str_sh.sh_size - sym.st_name);
            if (!nr)
                continue;
            uint64_t off = (uint64_t)((int64_t)sym.st_value - bias);
            if (sym.st_size < VDSO_PATCH_LEN || !fits(off, VDSO_PATCH_LEN, len))
                return -1;
            int seen = 0;
            for (int k = 0; k < n; k++)
                if (out[k].offset == off) {
                    if (out[k].nr != nr)
                        return -1; /* one code, two calls: not a vDSO this understands */
                    seen = 1;
                }
            if (seen)
                continue;
            if (n == VDSO_TIME_MAX)
                return -1;
            out[n].offset = off;
            out[n].nr = nr;
            n++;
        }
        return n;
    }
    return -1;
}

void vdso_patch_bytes(uint32_t nr, unsigned char out[VDSO_PATCH_LEN])
{
    out[0] = 0xb8; /* mov eax, imm32 */
    out[1] = (unsigned char)nr;
    out[2] = (unsigned char)(nr >> 8);
    out[3] = (unsigned char)(nr >> 16);
    out[4] = (unsigned char)(nr >> 24);
    out[5] = 0x0f; /* syscall */
    out[6] = 0x05;
    out[7] = 0xc3; /* ret */
}

int vdso_is_patched(const unsigned char *vdso, const struct vdso_entry *e)
{
    unsigned char patch[VDSO_PATCH_LEN];
    vdso_patch_bytes(e->nr, patch);
    for (int i = 0; i < VDSO_PATCH_LEN; i++)
        if (vdso[e->offset + i] != patch[i])
            return 0;
    return 1;
}

int vdso_unpatch(unsigned char *proc, const unsigned char *orig, size_t len,
                 const struct vdso_entry *e, int n)
{
    int put_back = 0;
    for (int i = 0; i < n; i++)
        if (fits(e[i].offset, VDSO_PATCH_LEN, len) && vdso_is_patched(proc, &e[i])) {
            copy_bytes(proc + e[i].offset, orig + e[i].offset, VDSO_PATCH_LEN);
            put_back++;
        }
    return put_back;
}
