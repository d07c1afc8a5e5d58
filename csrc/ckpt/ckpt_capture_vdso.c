/* ckpt_capture_vdso.c - the image describes the process as if its vDSO were
 * not patched (vdso_time.h): a migrated copy's clock functions are, and its
 * next restorer (at home, or on another node) maps a fresh vDSO. */
#include "ckpt_capture_common.h"
#include "vdso_time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#include "ckpt_hash.h"

#define STEPS_MAX 100000 /* a clock read is a few hundred instructions */

/* A process's [vdso]: where, its bytes, its clock functions (n -1: none understood). */
struct vdso {
    uint64_t start, end;
    unsigned char *bytes;
    struct vdso_entry e[VDSO_TIME_MAX];
    int n;
};

/* [vdso]'s range in the maps file at dirfd/path; 0 when it has none. */
static int vdso_range(int dirfd, const char *path, uint64_t *start, uint64_t *end)
{
    size_t len;
    char *maps = read_whole_file(dirfd, path, &len);
    if (!maps)
        ck_fail_errno("maps");
    int found = 0;
    for (char *line = strtok(maps, "\n"); line && !found; line = strtok(NULL, "\n")) {
        unsigned long long s, e;
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %n", &s, &e, &name_at) >= 2 && name_at &&
            strcmp(line + name_at, "[vdso]") == 0) {
            *start = s;
            *end = e;
            found = 1;
        }
    }
    free(maps);
    return found;
}

static int read_vdso(int procfd, int memfd, struct vdso *v)
{
    memset(v, 0, sizeof(*v));
    v->n = -1;
    if (!vdso_range(procfd, "maps", &v->start, &v->end) || v->end - v->start > (1u << 20))
        return 0;
    v->bytes = ck_alloc(v->end - v->start);
    if (ck_mem_read(memfd, v->start, v->bytes, v->end - v->start) < 0)
        ck_fail_errno("reading the vdso of the process");
    v->n = vdso_time_entries(v->bytes, v->end - v->start, v->e);
    return 1;
}

/* The entry whose first VDSO_PATCH_LEN bytes hold rip, or NULL. */
static const struct vdso_entry *entry_at(const struct vdso *v, uint64_t rip)
{
    for (int i = 0; i < v->n; i++)
        if (rip >= v->start + v->e[i].offset &&
            rip < v->start + v->e[i].offset + VDSO_PATCH_LEN)
            return &v->e[i];
    return NULL;
}

void ck_vdso_settle(struct ck_tracee *t, int procfd, int memfd)
{
    struct vdso v;
    if (!read_vdso(procfd, memfd, &v))
        return;
    for (int step = 0;; step++) {
        uint64_t rip = t->saved.rip;
        const struct vdso_entry *e = entry_at(&v, rip);
        if (rip < v.start || rip >= v.end || (e && rip == v.start + e->offset) ||
            (e && vdso_is_patched(v.bytes, e)))
            break; /* outside, or where the call may be made again from the start */
        if (step == STEPS_MAX)
            ck_fail("process %d does not leave the vdso's code", t->pid);
        if (ck_step(t) < 0)
            ck_fail("%s", ck_why);
    }
    free(v.bytes);
}

void ck_vdso_regs(struct mosix_ckpt_regs *r, int procfd, int memfd)
{
    struct vdso v;
    if (!read_vdso(procfd, memfd, &v))
        return;
    const struct vdso_entry *e = entry_at(&v, r->rip);
    if (e && vdso_is_patched(v.bytes, e))
        r->rip = v.start + e->offset; /* the clock is read again: rdi, rsi are the call's */
    free(v.bytes);
}

uint64_t ck_vdso_hash(int procfd, int memfd)
{
    struct vdso v;
    if (!read_vdso(procfd, memfd, &v))
        return 0;
    size_t len = v.end - v.start;
    /* The original bytes: this program's own vDSO, the same kernel's. */
    uint64_t own_start = getauxval(AT_SYSINFO_EHDR), s, e;
    if (v.n > 0 && own_start && vdso_range(AT_FDCWD, "/proc/self/maps", &s, &e) && s == own_start &&
        e - s == len)
        vdso_unpatch(v.bytes, (const unsigned char *)(uintptr_t)own_start, len, v.e, v.n);
    uint64_t h = mxh64(v.bytes, len, 0);
    free(v.bytes);
    return h;
}
