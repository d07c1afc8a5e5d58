/* restore_mem.c - clear the address space and map the image's areas. */
#include "restore.h"

#include <asm/errno.h>
#include <asm/mman.h>
#include <linux/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HUGE_AREA (1ull << 30) /* mapped MAP_NORESERVE: no commit charge up front */
#define TASK_END 0x800000000000ull /* above: [vsyscall], not ours to unmap */

static char maps[64 << 10];

static int name_is(const char *p, const char *name)
{
    while (*name)
        if (*p++ != *name++)
            return 0;
    return *p == '\n' || *p == '\0';
}

/* One line of /proc/self/maps: "start-end perms offset dev inode   name". */
static const char *parse_line(const char *p, struct span *s, const char **name)
{
    p = parse_hex(p, &s->start);
    if (*p == '-')
        p++;
    p = parse_hex(p, &s->end);
    for (int field = 0; field < 4 && *p && *p != '\n'; field++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ' && *p != '\n')
            p++;
    }
    while (*p == ' ')
        p++;
    *name = p;
    while (*p && *p != '\n')
        p++;
    return *p ? p + 1 : p;
}

void mem_find_specials(struct specials *cur)
{
    *cur = (struct specials){{0, 0}, {0, 0}, {0, 0}};
    (void)read_small_file("/proc/self/maps", maps, sizeof(maps));
    const char *p = maps;
    while (*p) {
        struct span s;
        const char *name;
        p = parse_line(p, &s, &name);
        if (name_is(name, "[vdso]"))
            cur->vdso = s;
        else if (name_is(name, "[vvar]"))
            cur->vvar = s;
        else if (name_is(name, "[vvar_vclock]"))
            cur->vclock = s;
    }
}

static uint64_t size_of(struct span s) { return s.end - s.start; }

/* The vdso's code reads the vvar pages at fixed offsets from itself: the three
 * move together, and only onto a layout this kernel made. */
void mem_check_specials(const struct image *img, const struct specials *cur)
{
    const struct mosix_ckpt_process *p = &img->proc;
    struct span iv = {p->vdso[0], p->vdso[1]}, ia = {p->vvar[0], p->vvar[1]},
                ic = {p->vvar_vclock[0], p->vvar_vclock[1]};
    int same = size_of(iv) == size_of(cur->vdso) && size_of(ia) == size_of(cur->vvar) &&
               size_of(ic) == size_of(cur->vclock);
    if (same && cur->vvar.end)
        same = ia.start - iv.start == cur->vvar.start - cur->vdso.start;
    if (same && cur->vclock.end)
        same = ic.start - iv.start == cur->vclock.start - cur->vdso.start;
    /* Same size and place is not enough: the program's libc holds pointers
     * into the vdso's code (clock_gettime...), so it must be the same code. */
    if (same && p->vdso_hash && cur->vdso.end &&
        mxh64((const void *)cur->vdso.start, size_of(cur->vdso), 0) != p->vdso_hash)
        refuse("the image's vdso differs from this kernel's (another kernel's code)");
    if (!same) {
        msg_begin();
        msg_str("the image's vdso differs from this kernel's ([vdso] ");
        msg_dec(size_of(iv));
        msg_str(" vs ");
        msg_dec(size_of(cur->vdso));
        msg_str(" bytes, or [vvar] and [vvar_vclock] elsewhere)");
        msg_refuse();
    }
}

static void unmap(uint64_t start, uint64_t end)
{
    if (start >= end)
        return;
    long rc = mosix_raw2(__NR_munmap, start, end - start);
    if (rc < 0) {
        msg_begin();
        msg_str("cannot unmap ");
        msg_range(start, end);
        msg_err(rc);
        msg_refuse();
    }
}

/* Unmap everything but the restorer's range and the three special areas:
 * munmap of the gaps between them (unmapping nothing is not an error). */
void mem_teardown(const struct specials *cur)
{
    struct span keep[4] = {cur->vdso, cur->vvar, cur->vclock,
                           {MOSIX_CKPT_RESTORER_BASE,
                            MOSIX_CKPT_RESTORER_BASE + MOSIX_CKPT_RESTORER_SPAN}};
    for (int i = 0; i < 4; i++) /* sort by start: four entries */
        for (int j = i + 1; j < 4; j++)
            if (keep[j].start < keep[i].start) {
                struct span t = keep[i];
                keep[i] = keep[j];
                keep[j] = t;
            }
    uint64_t at = 0;
    for (int i = 0; i < 4; i++) {
        if (keep[i].end == 0)
            continue; /* absent */
        unmap(at, keep[i].start);
        if (keep[i].end > at)
            at = keep[i].end;
    }
    unmap(at, TASK_END - PAGE);
}

void mem_unmap(uint64_t start, uint64_t end) { unmap(start, end); }

static void move(struct span from, uint64_t to);

void mem_park_specials(struct specials *cur)
{
    struct span *now[3] = {&cur->vvar, &cur->vclock, &cur->vdso};
    uint64_t low = UINT64_MAX;
    for (int i = 0; i < 3; i++)
        if (now[i]->end && now[i]->start < low)
            low = now[i]->start;
    for (int i = 0; i < 3; i++) {
        if (!now[i]->end)
            continue;
        if (now[i]->end - low > SCRATCH_SPAN)
            refuse("the vdso and vvar are too far apart");
        uint64_t to = SCRATCH_BASE + (now[i]->start - low);
        move(*now[i], to);
        *now[i] = (struct span){to, to + size_of(*now[i])};
    }
}

static void move(struct span from, uint64_t to)
{
    if (from.end == 0 || from.start == to)
        return;
    long rc = mosix_raw6(__NR_mremap, from.start, size_of(from), size_of(from),
                         MREMAP_MAYMOVE | MREMAP_FIXED, to, 0);
    if (rc < 0 || (uint64_t)rc != to) {
        msg_begin();
        msg_str("cannot move the vdso or vvar ");
        msg_range(from.start, from.end);
        msg_str(" to ");
        msg_hex(to);
        msg_err(rc < 0 ? rc : -EINVAL);
        msg_refuse();
    }
}

/* Through the scratch range first: the image's addresses may overlap where
 * the three are now.  The kernel's mremap hook keeps its idea of the vdso's
 * address (signal returns, /proc maps) up to date. */
void mem_move_specials(const struct image *img, const struct specials *cur)
{
    const struct mosix_ckpt_process *p = &img->proc;
    const struct span *now[3] = {&cur->vvar, &cur->vclock, &cur->vdso};
    const uint64_t *want[3] = {p->vvar, p->vvar_vclock, p->vdso};
    uint64_t low = UINT64_MAX;
    for (int i = 0; i < 3; i++)
        if (now[i]->end && now[i]->start < low)
            low = now[i]->start;
    struct span tmp[3];
    for (int i = 0; i < 3; i++) {
        tmp[i] = *now[i];
        if (!now[i]->end)
            continue;
        if (now[i]->end - low > SCRATCH_SPAN)
            refuse("the vdso and vvar are too far apart");
        uint64_t to = SCRATCH_BASE + (now[i]->start - low);
        move(*now[i], to);
        tmp[i] = (struct span){to, to + size_of(*now[i])};
    }
    for (int i = 0; i < 3; i++)
        move(tmp[i], want[i][0]);
}

void mem_map_area(const struct mosix_ckpt_area *a)
{
    uint64_t len = a->end - a->start;
    long flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    if (a->flags & MOSIX_CKPT_AREA_STACK)
        flags |= MAP_GROWSDOWN;
    if (a->prot == 0 || len >= HUGE_AREA)
        flags |= MAP_NORESERVE;
    /* Writable while its pages are read in; mem_finish_area sets the real protection. */
    long rc = mosix_raw6(__NR_mmap, a->start, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (rc < 0 || (uint64_t)rc != a->start) {
        msg_begin();
        msg_str("cannot map area ");
        msg_range(a->start, a->end);
        msg_err(rc < 0 ? rc : -EEXIST);
        msg_refuse();
    }
}

void mem_finish_area(const struct mosix_ckpt_area *a)
{
    if (a->prot == (PROT_READ | PROT_WRITE))
        return;
    long rc = mosix_raw3(__NR_mprotect, a->start, a->end - a->start, a->prot);
    if (rc < 0) {
        msg_begin();
        msg_str("cannot protect area ");
        msg_range(a->start, a->end);
        msg_err(rc);
        msg_refuse();
    }
}

/* Fault the pages in with one call instead of one fault per page during the
 * read.  Older kernels lack MADV_POPULATE_WRITE: the read faults them then.
 * No transparent huge pages (MADV_HUGEPAGE): measured here, they halve a warm
 * 1 GiB restore but triple a cold one and stall for seconds at times (huge
 * blocks freed to the hypervisor must come back), and they would change the
 * process's memory use. */
void mem_populate(uint64_t addr, uint64_t len)
{
    long rc = mosix_raw3(__NR_madvise, addr, len, MADV_POPULATE_WRITE);
    if (rc < 0 && rc != -EINVAL) {
        msg_begin();
        msg_str("cannot allocate memory at ");
        msg_range(addr, addr + len);
        msg_err(rc);
        msg_refuse();
    }
}
