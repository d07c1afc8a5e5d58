/* restore_vdso.c - a migrated copy reads its home's clocks through the vDSO
 * (vdso_time.h): its clock functions become system calls the forward filter
 * sends home.  Not under -t, not at home, not with -c. */
#include "restore.h"

#include <asm/mman.h>

#include "vdso_time.h"

static struct vdso_entry entries[VDSO_TIME_MAX];
static int nentries = -1; /* -1: nothing to patch */

/* Before the point of no return, on this restorer's own [vdso] (the copy's is
 * this one, moved): find the clock functions; refuse a process stopped in the
 * first bytes of one (the patch would land in the middle of its instructions;
 * the capturer steps it past them). */
void vdso_clocks_prepare(const struct image *img, const struct specials *cur)
{
    if (migration.forward_sock < 0 || migration.time_here || !cur->vdso.end)
        return;
    uint64_t len = cur->vdso.end - cur->vdso.start;
    nentries = vdso_time_entries((const unsigned char *)cur->vdso.start, len, entries);
    if (nentries < 0)
        refuse("cannot find the clock functions of this kernel's vdso (the process would read "
               "this node's clock; mosrun -t allows that)");
    uint64_t rip = img->regs.rip, base = img->proc.vdso[0];
    for (int i = 0; i < nentries; i++)
        if (rip > base + entries[i].offset && rip < base + entries[i].offset + VDSO_PATCH_LEN)
            refuse("the process is in the first instructions of a vdso clock function");
}

static void protect(uint64_t start, uint64_t len, long prot)
{
    long rc = mosix_raw3(__NR_mprotect, start, len, prot);
    if (rc < 0) {
        msg_begin();
        msg_str("cannot change the protection of the vdso ");
        msg_range(start, start + len);
        msg_err(rc);
        msg_refuse();
    }
}

/* After the vDSO moved to the image's address: write the patches (its pages
 * become the process's own copies). */
void vdso_clocks_patch(const struct image *img)
{
    if (nentries <= 0)
        return;
    uint64_t start = img->proc.vdso[0], len = img->proc.vdso[1] - img->proc.vdso[0];
    protect(start, len, PROT_READ | PROT_WRITE);
    for (int i = 0; i < nentries; i++) {
        unsigned char patch[VDSO_PATCH_LEN];
        vdso_patch_bytes(entries[i].nr, patch);
        unsigned char *at = (unsigned char *)(start + entries[i].offset);
        for (int b = 0; b < VDSO_PATCH_LEN; b++)
            at[b] = patch[b];
    }
    protect(start, len, PROT_READ | PROT_EXEC);
}
