/* ckpt_capture_memory.c - memory areas, the pages to store, AREA and PAGES records.
 *
 * Everything is read from the frozen copy (the clone injected into the
 * process), whose memory is the process's at the frozen point.
 *
 * Which pages are stored:
 * - [vdso], [vvar], [vvar_vclock]: none (the restorer moves its own there);
 * - readable private file mappings, in a checkpoint file for recovery here
 *   (ck_reference_files): the pages written since mapped (present or swapped
 *   and not the file's page, per the copy's page tables) are stored, the others
 *   are a reference to the file (its MAPFILE record: identity and a hash of
 *   those pages, read from the copy);
 * - other readable file-backed (or shared) areas: all pages, since their contents may
 *   come from the file; a page that cannot be read (past the file's end: the
 *   kernel refuses the access) ends the area, as every later page is past it too;
 * - anonymous private areas, and areas that were not readable (the copy was
 *   made to mprotect them PROT_READ): only pages present or swapped out, per
 *   the copy's page tables (fork copies the page table entries of anonymous
 *   memory, so they are the process's);
 * - pages that are all zero are not stored (the restorer's pages start zero:
 *   ck_image_pages_end leaves them out).
 *
 * The copy's memory is read through /proc/COPY/mem, not process_vm_readv:
 * process_vm_readv pins the pages, and pinning a copy-on-write page shared
 * with the live process makes the kernel unshare it (copy it) first (measured
 * here: 0.3-0.7 GB/s and the copy's memory doubled, against 3.4 GB/s). */
#include "ckpt_capture_common.h"
#include "ckpt_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* PAGEMAP_SCAN (Linux 6.7; not in older headers): ranges of pages by category. */
#ifndef PAGEMAP_SCAN
struct page_region {
    uint64_t start, end, categories;
};
struct pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#endif
#ifndef PAGE_IS_FILE
#define PAGE_IS_FILE (1 << 2)
#endif

#define PM_PRESENT (1ull << 63) /* /proc/PID/pagemap entry bits */
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61) /* a file page (or shared anonymous) */
#define READ_BYTES (4u << 20)   /* pages read at a time (at most) */
#define SPLIT_MIN (256u << 10)  /* pieces shared with the helper thread: at least twice this */
#define RANGES 512              /* present ranges asked for at a time */
#define PAGEMAP_CHUNK 4096      /* pagemap entries read at a time */

int ck_no_pagemap_scan;
int ck_reference_files;
const struct ck_owner *ck_reference_owner;

/* ------------------------------------------------------------ maps */

static uint32_t special_flag(const char *name)
{
    static const struct {
        const char *name;
        uint32_t flag;
    } specials[] = {
        {"[stack]", MOSIX_CKPT_AREA_STACK},  {"[heap]", MOSIX_CKPT_AREA_HEAP},
        {"[vdso]", MOSIX_CKPT_AREA_VDSO},    {"[vvar]", MOSIX_CKPT_AREA_VVAR},
        {"[vvar_vclock]", MOSIX_CKPT_AREA_VVAR_VCLOCK},
    };
    for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
        if (strcmp(name, specials[i].name) == 0)
            return specials[i].flag;
    return 0;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* One line of /proc/PID/maps:  START-END PERMS PGOFF MAJ:MIN INODE [NAME]
 * NAME is the rest of the line (a path may contain spaces). */
static int parse_line(char *line, struct ck_area *a)
{
    unsigned long long start, end, pgoff, inode;
    unsigned maj, min;
    char perms[8];
    int name_at = 0;
    if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &pgoff, &maj, &min,
               &inode, &name_at) < 7 ||
        strlen(perms) != 4 || !name_at)
        return -1;
    memset(a, 0, sizeof(*a));
    a->rec.start = start;
    a->rec.end = end;
    a->rec.pgoff = pgoff;
    a->rec.dev = makedev(maj, min);
    a->rec.ino = inode;
    a->rec.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                  (perms[2] == 'x' ? PROT_EXEC : 0);
    a->readable = perms[0] == 'r';
    if (perms[3] == 's')
        a->rec.flags |= MOSIX_CKPT_AREA_SHARED;
    char *name = line + name_at;
    if (inode && name[0] == '/') {
        a->rec.flags |= MOSIX_CKPT_AREA_FILE;
        if (ends_with(name, " (deleted)")) {
            a->rec.flags |= MOSIX_CKPT_AREA_DELETED;
            name[strlen(name) - strlen(" (deleted)")] = '\0';
        }
    } else {
        a->rec.flags |= special_flag(name);
    }
    a->name = strdup(name);
    if (!a->name)
        ck_fail("out of memory");
    a->rec.name_len = (uint32_t)strlen(name);
    return 0;
}

static int overlaps(uint64_t s, uint64_t e, uint64_t lo, uint64_t hi) { return s < hi && lo < e; }

/* Areas that are not in the image: [vsyscall] (not the process's), and the
 * trampoline a previous recovery left behind. */
static void mark_skipped(struct ck_area *a)
{
    if (strcmp(a->name, "[vsyscall]") == 0 || a->rec.end > MOSIX_CKPT_USER_HIGH)
        a->skip = 1;
    if (overlaps(a->rec.start, a->rec.end, MOSIX_CKPT_TRAMPOLINE,
                 MOSIX_CKPT_TRAMPOLINE + MOSIX_CKPT_TRAMPOLINE_SPAN)) {
        a->skip = 1;
        a->rec.flags |= MOSIX_CKPT_AREA_RESTORER;
    }
}

void ck_read_maps(int procfd, struct ck_maps *out)
{
    size_t len;
    char *text = read_whole_file(procfd, "maps", &len);
    if (!text)
        ck_fail_errno("/proc/PID/maps");
    size_t cap = 64;
    out->n = 0;
    out->a = ck_alloc(cap * sizeof(*out->a));
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if ((size_t)out->n == cap) {
            cap *= 2;
            out->a = realloc(out->a, cap * sizeof(*out->a));
            if (!out->a)
                ck_fail("out of memory");
        }
        if (parse_line(line, &out->a[out->n]) < 0)
            ck_fail("/proc/PID/maps: cannot parse '%.80s'", line);
        mark_skipped(&out->a[out->n]);
        out->n++;
        if (!nl)
            break;
        line = nl + 1;
    }
    free(text);
}

void ck_check_maps(const struct ck_maps *m)
{
    int stored = 0;
    for (int i = 0; i < m->n; i++) {
        const struct ck_area *a = &m->a[i];
        if (a->skip)
            continue;
        stored++;
        if ((a->rec.flags & MOSIX_CKPT_AREA_SHARED) && (a->rec.prot & PROT_WRITE))
            ck_refuse("it has a writable shared memory mapping (%llx-%llx %s)",
                      (unsigned long long)a->rec.start, (unsigned long long)a->rec.end,
                      a->name[0] ? a->name : "anonymous");
        if (overlaps(a->rec.start, a->rec.end, MOSIX_CKPT_TRAMPOLINE + MOSIX_CKPT_TRAMPOLINE_SPAN,
                     MOSIX_CKPT_RESTORER_BASE + MOSIX_CKPT_RESTORER_SPAN))
            ck_refuse("it has memory in the range the recovery needs (%llx-%llx)",
                      (unsigned long long)a->rec.start, (unsigned long long)a->rec.end);
    }
    if (stored > MOSIX_CKPT_MAX_AREAS)
        ck_refuse("it has %d memory areas (at most %d can be saved)", stored,
                  MOSIX_CKPT_MAX_AREAS);
}

/* fork leaves MADV_DONTFORK memory out of the copy and MADV_WIPEONFORK memory
 * empty in it: the image would silently lack it.  smaps says (VmFlags dc, wf). */
void ck_check_fork_flags(int procfd)
{
    size_t len;
    char *text = read_whole_file(procfd, "smaps", &len);
    if (!text)
        ck_fail_errno("/proc/PID/smaps");
    unsigned long long start = 0, end = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        unsigned long long s, e;
        if (sscanf(line, "%llx-%llx ", &s, &e) == 2) {
            start = s;
            end = e;
        } else if (strncmp(line, "VmFlags:", 8) == 0 &&
                   (strstr(line, " dc") || strstr(line, " wf"))) {
            free(text);
            ck_refuse("it has memory a fork does not copy (MADV_DONTFORK or MADV_WIPEONFORK, "
                      "%llx-%llx)", start, end);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
}

static int no_pages(const struct ck_area *a)
{
    return a->skip || (a->rec.flags & (MOSIX_CKPT_AREA_VDSO | MOSIX_CKPT_AREA_VVAR |
                                       MOSIX_CKPT_AREA_VVAR_VCLOCK));
}

void ck_open_unreadable(struct ck_tracee *copy, const struct ck_maps *m)
{
    for (int i = 0; i < m->n; i++) {
        const struct ck_area *a = &m->a[i];
        if (a->readable || no_pages(a))
            continue;
        uint64_t args[6] = {a->rec.start, a->rec.end - a->rec.start, PROT_READ, 0, 0, 0};
        int64_t ret;
        if (ck_inject(copy, 10 /* mprotect */, args, &ret) < 0)
            ck_fail("%s", ck_why);
        if (ret < 0) {
            errno = (int)-ret;
            ck_fail_errno("mprotect of %llx-%llx in the copy", (unsigned long long)a->rec.start,
                          (unsigned long long)a->rec.end);
        }
    }
}

/* ------------------------------------------------------------ present pages */

struct range {
    uint64_t start, end;
};

/* Up to cap ranges of present or swapped pages in [*from, end), advancing
 * *from past what was looked at.  written: only the pages that are not the
 * file's (a private file mapping's pages written since mapped), zero page
 * included.  -1 when PAGEMAP_SCAN is not there. */
static int scan_ranges(int pmfd, uint64_t *from, uint64_t end, struct range *out, int cap,
                       int written)
{
    struct page_region regions[RANGES];
    struct pm_scan_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.size = sizeof(arg);
    arg.start = *from;
    arg.end = end;
    arg.vec = (uint64_t)(uintptr_t)regions;
    arg.vec_len = (uint64_t)(cap < RANGES ? cap : RANGES);
    arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO;
    if (written) { /* PAGE_IS_FILE inverted and required: not the file's */
        arg.category_inverted = PAGE_IS_FILE;
        arg.category_mask = PAGE_IS_FILE;
        arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    }
    int n = ioctl(pmfd, PAGEMAP_SCAN, &arg);
    if (n < 0)
        return -1;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (written || !(regions[i].categories & PAGE_IS_PFNZERO)) /* the zero page: zeros */
            out[k++] = (struct range){regions[i].start, regions[i].end};
    *from = arg.walk_end > *from ? arg.walk_end : end;
    return k;
}

/* The same from /proc/PID/pagemap entries (kernels before 6.7). */
static int read_ranges(int pmfd, uint64_t *from, uint64_t end, struct range *out, int cap,
                       int written)
{
    static uint64_t entries[PAGEMAP_CHUNK];
    uint64_t first = *from;
    size_t want = (size_t)((end - first) / CK_PAGE);
    if (want > PAGEMAP_CHUNK)
        want = PAGEMAP_CHUNK;
    ssize_t got = pread(pmfd, entries, want * 8, (off_t)(first / CK_PAGE * 8));
    if (got <= 0 || got % 8)
        ck_fail_errno("/proc/PID/pagemap");
    size_t n = (size_t)got / 8;
    int k = 0;
    size_t i = 0;
    for (; i < n; i++) {
        if (!(entries[i] & (PM_PRESENT | PM_SWAPPED)) || (written && (entries[i] & PM_FILE)))
            continue;
        uint64_t addr = first + i * CK_PAGE;
        if (k > 0 && out[k - 1].end == addr) {
            out[k - 1].end += CK_PAGE;
            continue;
        }
        if (k == cap)
            break;
        out[k++] = (struct range){addr, addr + CK_PAGE};
    }
    *from = first + i * CK_PAGE;
    return k;
}

static int present_ranges(int pmfd, uint64_t *from, uint64_t end, struct range *out, int cap,
                          int written)
{
    if (!ck_no_pagemap_scan) {
        int k = scan_ranges(pmfd, from, end, out, cap, written);
        if (k >= 0)
            return k;
        if (errno != ENOTTY && errno != EINVAL && errno != EOPNOTSUPP)
            ck_fail_errno("PAGEMAP_SCAN");
        ck_no_pagemap_scan = 1;
    }
    return read_ranges(pmfd, from, end, out, cap, written);
}

/* ------------------------------------------------------------ storing pages */

/* A second thread reads half of each large piece at the same time: reading
 * the copy through /proc/PID/mem costs a lock, a page walk and two copies per
 * page, on one CPU, while the writer thread mostly waits for the disk. */
struct helper {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int memfd;
    unsigned char *buf; /* the job: len bytes at addr into buf */
    uint64_t addr;
    size_t len, got;
    int busy, quit;
};

struct pager {
    struct ck_image *im;
    int memfd;
    pid_t copy;
    struct helper *helper; /* NULL: one CPU, or no thread */
};

/* Read up to len bytes at addr; the bytes read before the first page that
 * cannot be (the kernel stops at it). */
static size_t read_some(int memfd, unsigned char *buf, uint64_t addr, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(memfd, buf + done, len - done, (off_t)(addr + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return done - done % CK_PAGE;
}

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->busy && !h->quit)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->quit)
            break;
        pthread_mutex_unlock(&h->mu);
        size_t got = read_some(h->memfd, h->buf, h->addr, h->len);
        pthread_mutex_lock(&h->mu);
        h->got = got;
        h->busy = 0;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static struct helper *start_helper(int memfd)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return NULL;
    struct helper *h = ck_alloc(sizeof(*h));
    h->memfd = memfd;
    sigset_t all, old;
    sigfillset(&all); /* termination signals go to the capturing thread */
    if (pthread_mutex_init(&h->mu, NULL) || pthread_cond_init(&h->cv, NULL) ||
        pthread_sigmask(SIG_SETMASK, &all, &old) != 0)
        ck_fail("cannot start a reader thread");
    int rc = pthread_create(&h->thread, NULL, helper_main, h);
    if (pthread_sigmask(SIG_SETMASK, &old, NULL) != 0)
        ck_fail("pthread_sigmask");
    if (rc != 0) {
        free(h);
        return NULL; /* one thread does it all */
    }
    return h;
}

static void stop_helper(struct helper *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->quit = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (pthread_join(h->thread, NULL) != 0)
        ck_fail("pthread_join");
    free(h);
}

/* read_some of len bytes, the second half by the helper.  As read_some: the
 * bytes read before the first page that cannot be. */
static size_t read_pages(struct pager *pg, unsigned char *buf, uint64_t addr, size_t len)
{
    struct helper *h = pg->helper;
    size_t half = len / 2 / CK_PAGE * CK_PAGE;
    if (!h || half < SPLIT_MIN)
        return read_some(pg->memfd, buf, addr, len);
    pthread_mutex_lock(&h->mu);
    h->buf = buf + half;
    h->addr = addr + half;
    h->len = len - half;
    h->busy = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    size_t got = read_some(pg->memfd, buf, addr, half);
    pthread_mutex_lock(&h->mu);
    while (h->busy)
        pthread_cond_wait(&h->cv, &h->mu);
    size_t more = h->got;
    pthread_mutex_unlock(&h->mu);
    return got < half ? got : half + more;
}

/* A page the copy cannot give is absent, unless the copy is gone (killed:
 * /proc/PID/mem then reads nothing at all).  A ptrace request succeeds only
 * on a tracee in its stop. */
static void check_copy(const struct pager *pg)
{
    unsigned long msg;
    if (ptrace(PTRACE_GETEVENTMSG, pg->copy, 0, &msg) < 0)
        ck_fail("the copy %d of the process ended during the capture", pg->copy);
}

/* What store_span does with a page it cannot read. */
enum on_fault {
    FAULT_SKIPS,   /* the page is treated as absent (zero) */
    FAULT_ENDS,    /* the area ends there (a file mapping past the file's end) */
    FAULT_FAILS,   /* the capture fails (a REFERENCE area: absent means the file's) */
};

/* Store [start, end), read straight into the image's chunks.  Returns 1 when
 * a page could not be read and the area ends there (FAULT_ENDS). */
static int store_span(struct pager *pg, uint64_t start, uint64_t end, enum on_fault on_fault)
{
    for (uint64_t a = start; a < end;) {
        size_t want = end - a < READ_BYTES ? (size_t)(end - a) : READ_BYTES, room;
        unsigned char *buf = ck_image_pages_begin(pg->im, want, &room);
        size_t got = read_pages(pg, buf, a, room);
        ck_image_pages_end(pg->im, a, got);
        if (got == room) {
            a += room;
            continue;
        }
        check_copy(pg);
        if (on_fault == FAULT_ENDS)
            return 1;
        if (on_fault == FAULT_FAILS)
            ck_fail("cannot read the written page at %llx of the copy",
                    (unsigned long long)(a + got));
        a += got + CK_PAGE; /* that page is treated as absent */
    }
    return 0;
}

/* Store the area's present (or swapped) pages but the zero page's; sent (NULL:
 * not wanted) gets a 1 for each page stored, per page from the area's start. */
static void store_present(struct pager *pg, int pmfd, const struct ck_area *a, uint8_t *sent)
{
    struct range r[RANGES];
    uint64_t from = a->rec.start;
    while (from < a->rec.end) {
        int n = present_ranges(pmfd, &from, a->rec.end, r, RANGES, 0);
        for (int i = 0; i < n; i++) {
            store_span(pg, r[i].start, r[i].end, FAULT_SKIPS);
            if (sent)
                memset(sent + (r[i].start - a->rec.start) / CK_PAGE, 1,
                       (size_t)((r[i].end - r[i].start) / CK_PAGE));
        }
    }
}

/* ------------------------------------------------------------ referenced files */

/* A file whose unchanged pages are referenced: its MAPFILE record, and the
 * hash of the pages referenced so far (areas in address order). */
struct mapfile {
    struct mosix_ckpt_mapfile rec;
    const char *path;
    struct mxh64 hash;
};

struct mapfiles {
    int n;
    struct mapfile f[MOSIX_CKPT_MAX_MAPFILES];
};

/* Whether the process's user may read the file (its mode; ACLs are not looked at:
 * a recovery they refuse says so in one line). */
static int owner_reads(const struct stat *st)
{
    const struct ck_owner *o = ck_reference_owner;
    if (!o || o->uid == 0)
        return 1;
    if (st->st_uid == o->uid)
        return (st->st_mode & S_IRUSR) != 0;
    int in_group = st->st_gid == o->gid;
    for (size_t i = 0; i < o->ngroups && !in_group; i++)
        in_group = st->st_gid == o->groups[i];
    if (in_group)
        return (st->st_mode & S_IRGRP) != 0;
    return (st->st_mode & S_IROTH) != 0;
}

static int referenceable(const struct ck_area *a)
{
    return ck_reference_files && a->readable && !no_pages(a) &&
           (a->rec.flags & MOSIX_CKPT_AREA_FILE) &&
           !(a->rec.flags & (MOSIX_CKPT_AREA_SHARED | MOSIX_CKPT_AREA_DELETED));
}

/* The MAPFILE of the area's file (added when new); -1 when the path (seen
 * from the process's root) is not the file mapped, or the table is full. */
static int find_mapfile(struct mapfiles *t, int childfd, const struct ck_area *a)
{
    for (int i = 0; i < t->n; i++)
        if (t->f[i].rec.dev == a->rec.dev && t->f[i].rec.ino == a->rec.ino &&
            strcmp(t->f[i].path, a->name) == 0)
            return i;
    if (t->n == MOSIX_CKPT_MAX_MAPFILES || a->rec.name_len >= MOSIX_CKPT_MAX_PATH)
        return -1;
    char rooted[MOSIX_CKPT_MAX_PATH + 8];
    snprintf(rooted, sizeof(rooted), "root%s", a->name);
    struct stat st;
    if (fstatat(childfd, rooted, &st, 0) < 0 || !S_ISREG(st.st_mode) ||
        st.st_dev != a->rec.dev || st.st_ino != a->rec.ino || !owner_reads(&st))
        return -1; /* replaced, gone, or not the user's to read: the pages are stored */
    struct mapfile *f = &t->f[t->n];
    memset(&f->rec, 0, sizeof(f->rec));
    f->rec.dev = st.st_dev;
    f->rec.ino = st.st_ino;
    f->rec.size = (uint64_t)st.st_size;
    f->rec.mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec;
    f->rec.path_len = a->rec.name_len;
    f->path = a->name;
    mxh_init(&f->hash, 0);
    return t->n++;
}

/* The end of the area's pages that the file has (past it: SIGBUS, nothing to refer to). */
static uint64_t file_end_in(const struct ck_area *a, uint64_t size)
{
    uint64_t have = (size + CK_PAGE - 1) / CK_PAGE * CK_PAGE;
    if (have <= a->rec.pgoff)
        return a->rec.start;
    uint64_t len = have - a->rec.pgoff;
    return len < a->rec.end - a->rec.start ? a->rec.start + len : a->rec.end;
}

static void add_written(struct ck_area *a, size_t *cap, uint64_t start, uint64_t end)
{
    if (a->nwritten && a->written[2 * a->nwritten - 1] == start) {
        a->written[2 * a->nwritten - 1] = end;
        return;
    }
    if (a->nwritten == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        a->written = realloc(a->written, *cap * 2 * sizeof(uint64_t));
        if (!a->written)
            ck_fail("out of memory");
    }
    a->written[2 * a->nwritten] = start;
    a->written[2 * a->nwritten + 1] = end;
    a->nwritten++;
}

/* Hash [start, end) of the copy (the file's pages) into f; 0, or -1 when a page
 * cannot be read. */
static int hash_span(struct mxh64 *h, int memfd, unsigned char *buf, uint64_t start, uint64_t end)
{
    for (uint64_t at = start; at < end;) {
        size_t n = end - at < READ_BYTES ? (size_t)(end - at) : READ_BYTES;
        if (read_some(memfd, buf, at, n) != n)
            return -1;
        mxh_update(h, buf, n);
        at += n;
    }
    return 0;
}

/* Decide whether a is a REFERENCE area: find its written pages and hash the
 * others into its file's MAPFILE.  Otherwise (its file replaced, a page that
 * cannot be read) it stays an area whose pages are all stored. */
static void plan_reference(struct mapfiles *t, struct ck_area *a, int childfd, int pmfd,
                           int memfd, unsigned char *buf)
{
    a->mapfile = -1;
    if (!referenceable(a))
        return;
    int i = find_mapfile(t, childfd, a);
    if (i < 0)
        return;
    struct mapfile *f = &t->f[i];
    struct mxh64 saved = f->hash;
    size_t cap = 0;
    a->nwritten = 0;
    struct range r[RANGES];
    for (uint64_t from = a->rec.start; from < a->rec.end;) {
        int n = present_ranges(pmfd, &from, a->rec.end, r, RANGES, 1);
        for (int k = 0; k < n; k++)
            add_written(a, &cap, r[k].start, r[k].end);
    }
    uint64_t eof = file_end_in(a, f->rec.size), at = a->rec.start;
    for (size_t k = 0; k < a->nwritten; k++)
        if (a->written[2 * k + 1] > eof) {
            a->nwritten = 0; /* written pages past the file's end: store it all */
            return;
        }
    for (size_t k = 0; k <= a->nwritten && at < eof; k++) {
        uint64_t gap_end = k < a->nwritten ? a->written[2 * k] : eof;
        if (gap_end > eof)
            gap_end = eof;
        if (gap_end > at && hash_span(&f->hash, memfd, buf, at, gap_end) < 0) {
            f->hash = saved; /* the file is not what is mapped: store it all */
            a->nwritten = 0;
            return;
        }
        if (k < a->nwritten)
            at = a->written[2 * k + 1];
    }
    a->mapfile = i;
    a->rec.flags |= MOSIX_CKPT_AREA_REFERENCE;
    a->rec.mapfile = (uint32_t)i;
}

/* MAPFILE records for the files some area refers to (a file whose areas all
 * ended up stored is left out: its change would not matter), renumbered. */
static void write_mapfiles(struct ck_image *im, struct mapfiles *t, struct ck_maps *m)
{
    static int index[MOSIX_CKPT_MAX_MAPFILES];
    for (int i = 0; i < t->n; i++)
        index[i] = -1;
    for (int i = 0; i < m->n; i++)
        if (m->a[i].mapfile >= 0)
            index[m->a[i].mapfile] = 0;
    int used = 0;
    for (int i = 0; i < t->n; i++)
        if (index[i] == 0)
            index[i] = used++;
    for (int i = 0; i < m->n; i++)
        if (m->a[i].mapfile >= 0) {
            m->a[i].mapfile = index[m->a[i].mapfile];
            m->a[i].rec.mapfile = (uint32_t)m->a[i].mapfile;
        }
    for (int i = 0; i < t->n; i++) {
        if (index[i] < 0)
            continue;
        struct mapfile *f = &t->f[i];
        f->rec.hash = mxh_final(&f->hash);
        struct iovec parts[2] = {
            {.iov_base = &f->rec, .iov_len = sizeof(f->rec)},
            {.iov_base = (void *)f->path, .iov_len = f->rec.path_len},
        };
        ck_image_record(im, MOSIX_CKPT_KIND_MAPFILE, parts, 2);
    }
}

/* ------------------------------------------------------------ writing */

static void write_area(struct ck_image *im, const struct ck_area *a)
{
    struct iovec parts[2] = {
        {.iov_base = (void *)&a->rec, .iov_len = sizeof(a->rec)},
        {.iov_base = a->name, .iov_len = a->rec.name_len},
    };
    ck_image_record(im, MOSIX_CKPT_KIND_AREA, parts, 2);
    im->areas++;
}

static void store_written(struct pager *pg, const struct ck_area *a)
{
    pg->im->keep_zeros = 1;
    for (size_t k = 0; k < a->nwritten; k++)
        store_span(pg, a->written[2 * k], a->written[2 * k + 1], FAULT_FAILS);
    pg->im->keep_zeros = 0;
}

/* ------------------------------------------------------------ for pre-copy */

struct ck_pager {
    struct pager pg;
    int pmfd;
};

struct ck_pager *ck_pager_open(struct ck_image *im, pid_t copy, int childfd, int memfd)
{
    struct ck_pager *p = ck_alloc(sizeof(*p));
    p->pmfd = openat(childfd, "pagemap", O_RDONLY | O_CLOEXEC);
    if (p->pmfd < 0)
        ck_fail_errno("/proc/PID/pagemap");
    p->pg = (struct pager){.im = im, .memfd = memfd, .copy = copy, .helper = start_helper(memfd)};
    return p;
}

void ck_pager_span(struct ck_pager *p, uint64_t start, uint64_t end)
{
    store_span(&p->pg, start, end, FAULT_SKIPS);
}

void ck_pager_present(struct ck_pager *p, const struct ck_area *a, uint8_t *sent)
{
    store_present(&p->pg, p->pmfd, a, sent);
}

void ck_pager_close(struct ck_pager *p)
{
    stop_helper(p->pg.helper);
    check_copy(&p->pg);
    if (close(p->pmfd) < 0)
        ck_fail_errno("close");
    free(p);
}

int ck_area_precopyable(const struct ck_area *a)
{
    return !a->skip && !no_pages(a) && a->readable && (a->rec.prot & PROT_WRITE) &&
           !(a->rec.flags & (MOSIX_CKPT_AREA_FILE | MOSIX_CKPT_AREA_SHARED));
}

const struct ck_precopy *ck_precopy_final;

/* An area the target keeps from the pre-copy rounds: AREA flagged PRECOPIED,
 * then the pages changed since (zero pages too: they overwrite). */
static int write_kept_area(struct pager *pg, const struct ck_area *a)
{
    const struct ck_pre_area *p = ck_precopy_kept(ck_precopy_final, a);
    if (!p)
        return 0;
    struct ck_area flagged = *a;
    flagged.rec.flags |= MOSIX_CKPT_AREA_PRECOPIED;
    write_area(pg->im, &flagged);
    pg->im->keep_zeros = 1;
    size_t n = (size_t)((p->end - p->start) / CK_PAGE);
    for (size_t i = 0; i < n;) {
        if (!p->dirty[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && p->dirty[j])
            j++;
        store_span(pg, p->start + i * CK_PAGE, p->start + j * CK_PAGE, FAULT_SKIPS);
        i = j;
    }
    pg->im->keep_zeros = 0;
    return 1;
}

void ck_write_memory(struct ck_image *im, pid_t copy, int childfd, int memfd, struct ck_maps *m)
{
    int pmfd = openat(childfd, "pagemap", O_RDONLY | O_CLOEXEC);
    if (pmfd < 0)
        ck_fail_errno("/proc/PID/pagemap");
    static struct mapfiles files;
    files.n = 0;
    unsigned char *buf = ck_alloc(READ_BYTES);
    for (int i = 0; i < m->n; i++)
        plan_reference(&files, &m->a[i], childfd, pmfd, memfd, buf);
    free(buf);
    write_mapfiles(im, &files, m);
    struct pager pg = {.im = im, .memfd = memfd, .copy = copy, .helper = start_helper(memfd)};
    for (int i = 0; i < m->n; i++) {
        const struct ck_area *a = &m->a[i];
        if (a->skip)
            continue;
        if (ck_precopy_final && ck_area_precopyable(a) && write_kept_area(&pg, a))
            continue;
        write_area(im, a);
        if (no_pages(a))
            continue;
        int whole = a->readable && (a->rec.flags & (MOSIX_CKPT_AREA_FILE | MOSIX_CKPT_AREA_SHARED));
        if (a->mapfile >= 0)
            store_written(&pg, a);
        else if (whole)
            store_span(&pg, a->rec.start, a->rec.end, FAULT_ENDS);
        else
            store_present(&pg, pmfd, a, NULL);
    }
    stop_helper(pg.helper);
    check_copy(&pg); /* everything read was the copy's */
    if (close(pmfd) < 0)
        ck_fail_errno("close");
}
