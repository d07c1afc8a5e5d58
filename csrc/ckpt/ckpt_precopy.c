/* ckpt_precopy.c - live migration's pre-copy rounds: which pages to send.
 *
 * The first round sends the anonymous private areas of a copy (the capture's
 * clone) while the process runs on; each later round sends the pages it wrote
 * since the previous copy, read from the next copy; the final image (the
 * process held) sends only the pages written since the last round for the
 * areas the target already holds (AREA flagged PRECOPIED).
 *
 * Which pages were written: this kernel has no soft-dirty bits, and the
 * userfaultfd a write-protection tracker needs would have to be created in the
 * process, where the discipline refuses it (benchmarks/bench_dirty_tracking.py
 * measured both).  Instead, the copies: right after a fork, the process shares
 * every anonymous page with its copy; a page it writes is copied for it
 * (copy-on-write), and is from then on mapped by it alone, which
 * /proc/PID/pagemap says (bit 56, "exclusively mapped").  So, the process
 * stopped and its last copy still alive: written since that copy = mapped
 * exclusively, or swapped out (no such bit: sent again), or absent now while
 * sent before (unmapped or dropped: sent again, reading zeros; then it counts
 * as not sent).  "Sent" is stored: a page absent or the zero page at the first
 * copy, never touched since, is never sent (the target's pages start zero;
 * counting every page of an area as sent once resent an idle process's
 * untouched pages, zeros, every round: 8 MiB a round under the shim).  A page that
 * became shared with something else since (a child the process forked after
 * the first copy) could hide a write: then nothing is kept and the final image
 * carries every page. */
#include "ckpt_capture_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_EXCLUSIVE (1ull << 56)
#define ENTRIES 65536 /* pagemap entries read at a time (512 KiB) */

/* The process's children but our copies (ours), in the kernel's order. */
static void read_children(int procfd, pid_t pid, const pid_t *ours, int nours, char *out,
                          size_t size)
{
    char path[64], text[4096];
    snprintf(path, sizeof(path), "task/%d/children", (int)pid);
    if (ck_read_small(procfd, path, text, sizeof(text)) < 0)
        ck_fail_errno("/proc/%d/%s", (int)pid, path);
    size_t len = 0;
    out[0] = '\0';
    char *save = NULL;
    for (char *w = strtok_r(text, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
        int mine = 0;
        for (int i = 0; i < nours; i++)
            mine |= atoi(w) == ours[i];
        int n = mine ? 0 : snprintf(out + len, size - len, "%s ", w);
        if (n < 0 || (size_t)n >= size - len)
            ck_fail("process %d has too many children", (int)pid);
        len += (size_t)n;
    }
}

void ck_precopy_first(struct ck_precopy *pc, struct ck_image *im, pid_t copy, int copyfd,
                      int copymem, const struct ck_maps *maps, int procfd, pid_t pid)
{
    memset(pc, 0, sizeof(*pc));
    read_children(procfd, pid, &copy, 1, pc->children, sizeof(pc->children));
    pc->a = ck_alloc((size_t)(maps->n ? maps->n : 1) * sizeof(*pc->a));
    for (int i = 0; i < maps->n; i++) {
        const struct ck_area *a = &maps->a[i];
        if (!ck_area_precopyable(a))
            continue;
        struct ck_pre_area *p = &pc->a[pc->n++];
        size_t n = (size_t)((a->rec.end - a->rec.start) / CK_PAGE);
        p->start = a->rec.start;
        p->end = a->rec.end;
        p->sent = ck_alloc(n); /* zeroed: the target's pages start zero */
        p->dirty = ck_alloc(n);
        struct iovec parts[2] = {
            {.iov_base = (void *)&a->rec, .iov_len = sizeof(a->rec)},
            {.iov_base = a->name, .iov_len = a->rec.name_len},
        };
        ck_image_record(im, MOSIX_CKPT_KIND_PRE_AREA, parts, 2);
    }
    im->pages_kind = MOSIX_CKPT_KIND_PRE_PAGES;
    struct ck_pager *pg = ck_pager_open(im, copy, copyfd, copymem);
    /* only the pages stored count as sent: a page never touched (or the zero
     * page) that is absent later has nothing to overwrite at the target */
    for (int i = 0, k = 0; i < maps->n; i++)
        if (ck_area_precopyable(&maps->a[i]))
            ck_pager_present(pg, &maps->a[i], pc->a[k++].sent);
    ck_pager_close(pg);
    im->pages_kind = 0;
}

uint64_t ck_precopy_scan(struct ck_precopy *pc, int procfd, pid_t pid, const pid_t *ours,
                         int nours)
{
    char now[sizeof(pc->children)];
    read_children(procfd, pid, ours, nours, now, sizeof(now));
    if (strcmp(now, pc->children) != 0)
        pc->unreliable = 1;
    int pmfd = openat(procfd, "pagemap", O_RDONLY | O_CLOEXEC);
    if (pmfd < 0)
        ck_fail_errno("/proc/%d/pagemap", (int)pid);
    static uint64_t e[ENTRIES];
    uint64_t found = 0;
    for (int k = 0; k < pc->n; k++) {
        struct ck_pre_area *p = &pc->a[k];
        size_t n = (size_t)((p->end - p->start) / CK_PAGE);
        for (size_t i = 0; i < n;) {
            size_t want = n - i < ENTRIES ? n - i : ENTRIES;
            off_t at = (off_t)((p->start / CK_PAGE + i) * 8);
            ssize_t got = pread(pmfd, e, want * 8, at);
            if (got < 0)
                ck_fail_errno("/proc/%d/pagemap", (int)pid);
            if (got == 0 || got % 8)
                ck_fail("/proc/%d/pagemap: short read", (int)pid);
            size_t m = (size_t)got / 8;
            for (size_t j = 0; j < m; j++, i++) {
                uint64_t v = e[j];
                uint8_t dirty = 0;
                if ((v & PM_SWAPPED) || ((v & PM_PRESENT) && (v & PM_EXCLUSIVE)))
                    dirty = CK_PRE_WRITTEN;
                else if (!(v & PM_PRESENT) && p->sent[i])
                    dirty = CK_PRE_DROPPED;
                p->dirty[i] = dirty;
                found += dirty != 0;
            }
        }
    }
    if (close(pmfd) < 0)
        ck_fail_errno("close");
    pc->last_dirty = found;
    return found;
}

void ck_precopy_send(struct ck_precopy *pc, struct ck_image *im, pid_t copy, int copyfd,
                     int copymem)
{
    im->pages_kind = MOSIX_CKPT_KIND_PRE_PAGES;
    im->keep_zeros = 1; /* a page written to zeros overwrites what was sent */
    struct ck_pager *pg = ck_pager_open(im, copy, copyfd, copymem);
    for (int k = 0; k < pc->n; k++) {
        struct ck_pre_area *p = &pc->a[k];
        size_t n = (size_t)((p->end - p->start) / CK_PAGE);
        for (size_t i = 0; i < n;) {
            if (!p->dirty[i]) {
                i++;
                continue;
            }
            size_t j = i;
            for (; j < n && p->dirty[j]; j++) /* a dropped page's zeros go: then it holds none */
                p->sent[j] = p->dirty[j] == CK_PRE_WRITTEN;
            ck_pager_span(pg, p->start + i * CK_PAGE, p->start + j * CK_PAGE);
            i = j;
        }
    }
    ck_pager_close(pg);
    im->pages_kind = 0;
    im->keep_zeros = 0;
    pc->rounds++;
}

const struct ck_pre_area *ck_precopy_kept(const struct ck_precopy *pc, const struct ck_area *a)
{
    if (!pc || pc->unreliable)
        return NULL;
    for (int k = 0; k < pc->n; k++)
        if (pc->a[k].start == a->rec.start && pc->a[k].end == a->rec.end)
            return &pc->a[k];
    return NULL;
}
