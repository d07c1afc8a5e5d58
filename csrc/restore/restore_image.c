/* restore_image.c - read and verify an image, strictly in order (read(2)
 * only: the descriptor may be a pipe or a socket).
 *
 * The same code serves `-c` (verify, map nothing) and the real restore, which
 * reads pages straight into place: every check is made before the bytes it
 * guards are used, so a hostile image is refused, never half-believed. */
#include "restore.h"

#include <asm/errno.h>
#include <asm/signal.h>
#include <linux/auxvec.h>
#include <linux/poll.h>

#define SCRATCH_BYTES (256u << 10)
static unsigned char scratch[SCRATCH_BYTES] __attribute__((aligned(64)));

static const char *const kind_names[] = {
    "?",       "PROCESS", "OPTIONS", "CWD",   "FILE", "FILEDATA",
    "REGS",    "XSTATE",  "SIGACTIONS", "AREA", "PAGES", "END", "THREAD", "SIGNAL", "TIMER",
    "PRIVATE", "MAPFILE", "PRE_AREA", "PRE_PAGES",
};

/* ------------------------------------------------------------ refusals */

/* "corrupted image (record N: " ... ")" */
static void corrupt_begin(const struct reader *r)
{
    msg_begin();
    msg_str("corrupted image (record ");
    msg_dec(r->seq);
    msg_str(": ");
}

__attribute__((noreturn)) static void corrupt_end(void)
{
    msg_str(")");
    msg_refuse();
}

__attribute__((noreturn)) static void corrupt(const struct reader *r, const char *what)
{
    corrupt_begin(r);
    msg_str(what);
    corrupt_end();
}

__attribute__((noreturn)) static void corrupt_value(const struct reader *r, const char *what,
                                                    uint64_t v)
{
    corrupt_begin(r);
    msg_str(what);
    msg_str(" ");
    msg_hex(v);
    corrupt_end();
}

/* ------------------------------------------------------------ bytes */

/* Wait for a non-blocking descriptor (a socket handed over as it was). */
static void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    long rc;
    do
        rc = mosix_raw3(__NR_poll, &p, 1, -1);
    while (rc == -EINTR);
    if (rc < 0) {
        msg_begin();
        msg_str("cannot read the image");
        msg_err(rc);
        msg_refuse();
    }
}

/* Up to n bytes; fewer only at the end of the stream. */
static size_t read_some(int fd, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        long got = mosix_raw3(__NR_read, fd, (char *)buf + done, n - done);
        if (got == -EINTR)
            continue;
        if (got == -EAGAIN) {
            wait_readable(fd);
            continue;
        }
        if (got < 0) {
            msg_begin();
            msg_str("cannot read the image");
            msg_err(got);
            msg_refuse();
        }
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return done;
}

static void read_exact(struct reader *r, void *buf, size_t n)
{
    if (read_some(r->fd, buf, n) != n)
        refuse("truncated image");
}

/* n bytes of the current payload into buf, hashed on the way. */
static void payload_read(struct reader *r, void *buf, uint64_t n)
{
    if (n > r->left)
        corrupt(r, "record too short");
    read_exact(r, buf, n);
    mxh_update(&r->hash, buf, n);
    r->left -= n;
}

/* The payload's rest into the scratch buffer (only its hash matters). */
static void payload_skip(struct reader *r)
{
    while (r->left) {
        uint64_t n = r->left < SCRATCH_BYTES ? r->left : SCRATCH_BYTES;
        payload_read(r, scratch, n);
    }
}

static void payload_end(struct reader *r)
{
    if (r->left)
        corrupt(r, "record too long");
    if (mxh_final(&r->hash) != r->rh.payload_hash)
        corrupt(r, "checksum mismatch");
}

/* ------------------------------------------------------------ headers */

/* A failed checkpoint is a text file: "mosrun: reason\n".  Say the reason. */
__attribute__((noreturn)) static void failed_checkpoint(struct reader *r)
{
    char text[512];
    size_t n = read_some(r->fd, text, sizeof(text) - 1);
    msg_begin();
    size_t i = 0;
    while (i < n && text[i] != '\n') {
        unsigned char c = (unsigned char)text[i];
        text[i] = (c < 0x20 || c > 0x7e) ? '?' : (char)c;
        i++;
    }
    text[i] = '\0';
    msg_str(i ? text : "the checkpoint failed");
    msg_refuse();
}

void image_read_header(struct reader *r)
{
    struct mosix_ckpt_file_header h;
    size_t prefix = sizeof(MOSIX_CKPT_FAILED_PREFIX) - 1;
    _Static_assert(sizeof(MOSIX_CKPT_FAILED_PREFIX) - 1 <= sizeof(h.magic), "prefix");
    size_t got = read_some(r->fd, &h, sizeof(h.magic));
    if (got == prefix && mem_equal(&h, MOSIX_CKPT_FAILED_PREFIX, prefix))
        failed_checkpoint(r);
    if (got != sizeof(h.magic) || !mem_equal(h.magic, MOSIX_CKPT_MAGIC, sizeof(h.magic)))
        refuse("not a checkpoint image");
    read_exact(r, (char *)&h + sizeof(h.magic), sizeof(h) - sizeof(h.magic));
    /* Version and architecture first: another version may checksum otherwise. */
    if (h.version < MOSIX_CKPT_OLDEST_VERSION || h.version > MOSIX_CKPT_VERSION) {
        msg_begin();
        msg_str("image version ");
        msg_dec(h.version);
        msg_str(", this mosrun reads versions ");
        msg_dec(MOSIX_CKPT_OLDEST_VERSION);
        msg_str(" to ");
        msg_dec(MOSIX_CKPT_VERSION);
        msg_refuse();
    }
    if (h.head_hash != mxh64(&h, offsetof(struct mosix_ckpt_file_header, head_hash), 0))
        refuse("corrupted image (file header: checksum mismatch)");
    if (h.arch != MOSIX_CKPT_ARCH)
        refuse("image from another architecture");
    if (h.page_size != MOSIX_CKPT_PAGE_SIZE)
        refuse("image from another architecture (page size)");
    if (h.header_size != sizeof(h) || h.flags != 0)
        refuse("corrupted image (file header: unknown size or flags)");
    r->seq = 0;
    r->rh.kind = 0; /* no record yet: the first one read is seq 0 */
}

/* The next record's header; returns its kind. */
static unsigned record_next(struct reader *r)
{
    if (r->rh.kind)
        r->seq++;
    read_exact(r, &r->rh, sizeof(r->rh));
    const struct mosix_ckpt_record_header *h = &r->rh;
    if (h->head_hash != mxh64(h, offsetof(struct mosix_ckpt_record_header, head_hash), 0))
        corrupt(r, "header checksum mismatch");
    if (h->seq != r->seq)
        corrupt_value(r, "sequence number", h->seq);
    if (h->kind == 0 || h->kind >= LEN(kind_names))
        corrupt_value(r, "unknown kind", h->kind);
    if (h->flags != 0)
        corrupt_value(r, "unknown flags", h->flags);
    if (h->length > MOSIX_CKPT_MAX_RECORD_BYTES)
        corrupt_value(r, "length too large:", h->length);
    r->left = h->length;
    mxh_init(&r->hash, 0);
    return h->kind;
}

__attribute__((noreturn)) static void out_of_order(const struct reader *r)
{
    corrupt_begin(r);
    msg_str(kind_names[r->rh.kind]);
    msg_str(" out of order");
    corrupt_end();
}

static void expect(struct reader *r, unsigned kind)
{
    unsigned got = r->held ? r->rh.kind : record_next(r);
    r->held = 0;
    if (got != kind)
        out_of_order(r);
}

/* A record holding exactly one struct. */
static void read_struct(struct reader *r, void *buf, size_t size)
{
    if (r->rh.length != size)
        corrupt_value(r, "wrong length", r->rh.length);
    payload_read(r, buf, size);
    payload_end(r);
}

/* ------------------------------------------------------------ PROCESS */

static int user_addr(uint64_t a) { return a >= MOSIX_CKPT_USER_LOW && a < MOSIX_CKPT_USER_HIGH; }

static void check_span(const struct reader *r, const uint64_t s[2], const char *what)
{
    if (s[0] == 0 && s[1] == 0)
        return;
    if (s[0] >= s[1] || s[0] % PAGE || s[1] % PAGE || !user_addr(s[0]) ||
        s[1] > MOSIX_CKPT_USER_HIGH)
        corrupt(r, what);
    /* Moved there before any AREA is read: never onto the restorer. */
    if (s[0] < MOSIX_CKPT_RESTORER_BASE + MOSIX_CKPT_RESTORER_SPAN &&
        s[1] > MOSIX_CKPT_TRAMPOLINE)
        corrupt(r, what);
}

static void check_mm_fields(const struct reader *r, const struct mosix_ckpt_process *p)
{
    const uint64_t mm[] = {p->start_code, p->end_code,  p->start_data, p->end_data,
                           p->start_brk,  p->brk,       p->start_stack, p->arg_start,
                           p->arg_end,    p->env_start, p->env_end};
    for (size_t i = 0; i < LEN(mm); i++)
        if (!user_addr(mm[i]))
            corrupt_value(r, "memory layout address", mm[i]);
    /* The order PR_SET_MM_MAP requires. */
    if (p->start_code >= p->end_code || p->start_data > p->end_data || p->start_brk > p->brk ||
        p->arg_start > p->arg_end || p->env_start > p->env_end)
        corrupt(r, "memory layout out of order");
    uint32_t w = p->auxv_words;
    if (w < 2 || w > LEN(p->auxv) || w % 2 || p->auxv[w - 2] != AT_NULL)
        corrupt_value(r, "auxiliary vector of words", w);
}

static void check_timers(const struct reader *r, const int64_t t[12])
{
    for (int i = 0; i < 12; i += 2)
        if (t[i] < 0 || t[i + 1] < 0 || t[i + 1] >= 1000000)
            corrupt(r, "interval timer out of range");
}

static void check_rseq(const struct reader *r, uint64_t addr, uint32_t len)
{
    if (len && (len < 32 || len > PAGE || addr % 32 || !user_addr(addr) ||
                addr + len > MOSIX_CKPT_USER_HIGH))
        corrupt(r, "rseq area");
}

/* The kernel takes exactly one struct robust_list_head (3 words). */
static void check_robust(const struct reader *r, uint64_t list, uint64_t len)
{
    if (list && (len != 24 || !user_addr(list)))
        corrupt(r, "robust list");
}

static void check_tid_addr(const struct reader *r, uint64_t addr)
{
    if (addr && (addr % 4 || !user_addr(addr)))
        corrupt(r, "thread id address");
}

static void check_altstack(const struct reader *r, uint64_t sp, uint64_t size, int32_t flags)
{
    int mode = flags & ~(int32_t)SS_AUTODISARM;
    if (mode != 0 && mode != SS_ONSTACK && mode != SS_DISABLE)
        corrupt(r, "signal stack flags");
    if (mode != SS_DISABLE && size && (!user_addr(sp) || size > MOSIX_CKPT_USER_HIGH))
        corrupt(r, "signal stack");
}

static void validate_process(const struct reader *r, const struct mosix_ckpt_process *p)
{
    if (p->xsave_size < 576 || p->xsave_size > MOSIX_CKPT_MAX_XSAVE)
        corrupt_value(r, "XSAVE size", p->xsave_size);
    if (p->shim_kind > MOSIX_CKPT_SHIM_ENOSYS || p->shim_mode > 2)
        corrupt(r, "unknown shim filter");
    if (p->shim_kind != MOSIX_CKPT_SHIM_NONE &&
        (p->shim_lo >= p->shim_hi || p->shim_hi > MOSIX_CKPT_USER_HIGH))
        corrupt(r, "shim filter range");
    check_rseq(r, p->rseq_addr, p->rseq_len);
    check_robust(r, p->robust_list, p->robust_len);
    check_tid_addr(r, p->tid_addr);
    if (p->personality == 0xffffffffu)
        corrupt(r, "personality");
    check_mm_fields(r, p);
    check_timers(r, p->itimers);
    check_altstack(r, p->altstack_sp, p->altstack_size, p->altstack_flags);
    check_span(r, p->vdso, "vdso address");
    check_span(r, p->vvar, "vvar address");
    check_span(r, p->vvar_vclock, "vvar_vclock address");
    if (p->threads < 1 || p->threads > MOSIX_CKPT_MAX_THREADS)
        corrupt_value(r, "thread count", p->threads);
    if (p->tcb_tid_offset % 4 || p->tcb_tid_offset >= MOSIX_CKPT_MAX_TCB_TID_OFFSET)
        corrupt_value(r, "thread id offset", p->tcb_tid_offset);
}

/* ------------------------------------------------------------ REGS .. SIGACTIONS */

#define USER_CS 0x33 /* __USER_CS: 64-bit code */
#define USER_DS 0x2b /* __USER_DS */

static void validate_regs(const struct reader *r, const struct mosix_ckpt_regs *g)
{
    if (g->cs != USER_CS || g->ss != USER_DS)
        corrupt(r, "not a 64-bit process (segments)");
    if (!user_addr(g->rip))
        corrupt_value(r, "resume address", g->rip);
    if (g->fs_base >= MOSIX_CKPT_USER_HIGH || g->gs_base >= MOSIX_CKPT_USER_HIGH)
        corrupt(r, "thread pointer in kernel space");
}

/* XRSTOR raises #GP on a bad header or MXCSR; the kernel would then kill the
 * resumed process with SIGSEGV.  Refuse such a state before anything changes. */
static void validate_xstate(const struct reader *r, const struct image *img,
                            const unsigned char *x)
{
    uint32_t mxcsr;
    uint64_t bv, hdr[8];
    __builtin_memcpy(&mxcsr, x + 24, 4);
    __builtin_memcpy(hdr, x + 512, sizeof(hdr));
    bv = hdr[0];
    if (mxcsr & ~cpu_mxcsr_mask())
        corrupt_value(r, "MXCSR", mxcsr);
    if (bv & ~img->proc.xfeatures)
        corrupt_value(r, "XSAVE features", bv);
    for (int i = 1; i < 8; i++)
        if (hdr[i])
            corrupt(r, "XSAVE header not in the standard form");
}

static void validate_sigactions(const struct reader *r, const struct mosix_ckpt_sigaction *s)
{
    for (int i = 0; i < 64; i++) {
        if (s[i].handler > 1 && !user_addr(s[i].handler))
            corrupt_value(r, "signal handler", s[i].handler);
        if (s[i].restorer && !user_addr(s[i].restorer))
            corrupt_value(r, "signal restorer", s[i].restorer);
    }
}

/* ------------------------------------------------------------ skipped records */

static void skip_text(struct reader *r, unsigned kind, uint64_t max)
{
    expect(r, kind);
    if (r->rh.length > max)
        corrupt_value(r, "length too large:", r->rh.length);
    payload_skip(r);
    payload_end(r);
}

/* CWD: the home's directory is the deputy's; a private one is noted
 * (restore_private.c). */
static void read_cwd(struct reader *r)
{
    static char path[MOSIX_CKPT_MAX_PATH];
    expect(r, MOSIX_CKPT_KIND_CWD);
    if (r->rh.length > MOSIX_CKPT_MAX_PATH)
        corrupt_value(r, "length too large:", r->rh.length);
    uint64_t n = r->rh.length;
    payload_read(r, path, n);
    payload_end(r);
    private_cwd(path, (size_t)n);
}

/* A PRIVATE record of a moving process (restore_private.c): its directory, or
 * a file and its contents. */
static void write_private(struct reader *r, const struct mosix_ckpt_private *p)
{
    static char path[MOSIX_CKPT_MAX_PATH + 1];
    payload_read(r, path, p->path_len);
    path[p->path_len] = '\0';
    if (p->kind == MOSIX_CKPT_PRIVATE_DIRECTORY && p->size == 0) {
        private_directory(path, p->path_len);
        return;
    }
    if (p->kind != MOSIX_CKPT_PRIVATE_FILE && p->kind != MOSIX_CKPT_PRIVATE_MORE)
        corrupt(r, "private record kind");
    int fd = p->kind == MOSIX_CKPT_PRIVATE_FILE ? private_file_open(path, p->path_len, p->mode)
                                                : private_file_more(path, p->path_len, p->mode);
    while (r->left) {
        uint64_t n = r->left < SCRATCH_BYTES ? r->left : SCRATCH_BYTES;
        payload_read(r, scratch, n);
        private_file_write(fd, scratch, (size_t)n);
    }
    private_file_close(fd);
}

/* FILE, FILEDATA and PRIVATE are the caller's (it opened the files and filled
 * the private directories before exec'ing us): check their shape and
 * checksums, use nothing; but a moving process's PRIVATE records are written
 * here (write_private). */
static unsigned skip_files(struct reader *r, struct image *img)
{
    for (;;) {
        unsigned kind = record_next(r);
        if (kind == MOSIX_CKPT_KIND_FILE) {
            struct mosix_ckpt_file f;
            if (r->rh.length < sizeof(f))
                corrupt(r, "record too short");
            payload_read(r, &f, sizeof(f));
            if (f.path_len != r->rh.length - sizeof(f) || f.path_len > MOSIX_CKPT_MAX_PATH)
                corrupt(r, "file path length");
            if (f.fd < 0 || f.fd >= MOSIX_CKPT_MAX_FILES || f.kind < MOSIX_CKPT_FILE_REGULAR ||
                f.kind > MOSIX_CKPT_FILE_OTHER)
                corrupt(r, "file descriptor");
            if (++img->files > MOSIX_CKPT_MAX_FILES)
                corrupt(r, "too many files");
            if (f.cloexec)
                img->cloexec[f.fd / 64] |= 1ull << (f.fd % 64);
        } else if (kind == MOSIX_CKPT_KIND_FILEDATA) {
            struct mosix_ckpt_filedata d;
            if (r->rh.length < sizeof(d))
                corrupt(r, "record too short");
            payload_read(r, &d, sizeof(d));
            if (d.fd < 0 || d.fd >= MOSIX_CKPT_MAX_FILES)
                corrupt(r, "file descriptor");
        } else if (kind == MOSIX_CKPT_KIND_PRIVATE) {
            struct mosix_ckpt_private p;
            if (r->rh.length < sizeof(p))
                corrupt(r, "record too short");
            payload_read(r, &p, sizeof(p));
            if (p.path_len > MOSIX_CKPT_MAX_PATH ||
                r->rh.length - sizeof(p) != (uint64_t)p.path_len + p.size)
                corrupt(r, "private file length");
            if (private_restoring())
                write_private(r, &p);
        } else {
            return kind;
        }
        payload_skip(r);
        payload_end(r);
    }
}

/* ------------------------------------------------------------ THREAD, SIGNAL */

static void read_thread(struct reader *r, struct image *img)
{
    uint32_t i = img->nthreads, size = img->proc.xsave_size;
    if (i + 1 >= img->proc.threads)
        corrupt(r, "more THREAD records than the PROCESS record counts");
    if ((uint64_t)(i + 1) * size > THREAD_XSTATE_ROOM)
        refuse("too many threads for the restorer's room for their XSAVE areas");
    struct mosix_ckpt_thread *t = &img->threads[i];
    if (r->rh.length != sizeof(*t) + size)
        corrupt_value(r, "wrong length", r->rh.length);
    payload_read(r, t, sizeof(*t));
    unsigned char *x = img->thread_xstate + (uint64_t)i * size;
    payload_read(r, x, size);
    payload_end(r);
    if (t->flags != 0)
        corrupt_value(r, "unknown thread flags", t->flags);
    if (t->tid == 0 || t->tid == img->proc.pid || t->tid > 0x7fffffffu)
        corrupt_value(r, "thread id", t->tid);
    for (uint32_t j = 0; j < i; j++)
        if (img->threads[j].tid == t->tid)
            corrupt_value(r, "thread id twice:", t->tid);
    struct mosix_ckpt_regs regs;
    __builtin_memcpy(&regs, t->regs, sizeof(regs));
    validate_regs(r, &regs);
    validate_xstate(r, img, x);
    check_altstack(r, t->altstack_sp, t->altstack_size, t->altstack_flags);
    check_rseq(r, t->rseq_addr, t->rseq_len);
    check_robust(r, t->robust_list, t->robust_len);
    check_tid_addr(r, t->tid_addr);
    check_tid_addr(r, t->clear_tid);
    img->nthreads = i + 1;
}

#define SIGKILL_NR 9
#define SIGSTOP_NR 19

static int known_thread(const struct image *img, uint32_t tid)
{
    if (tid == img->proc.pid)
        return 1;
    for (uint32_t j = 0; j < img->nthreads; j++)
        if (img->threads[j].tid == tid)
            return 1;
    return 0;
}

static void read_signal(struct reader *r, struct image *img)
{
    if (img->nsignals >= MOSIX_CKPT_MAX_SIGNALS)
        corrupt(r, "too many pending signals");
    struct mosix_ckpt_signal *s = &img->signals[img->nsignals];
    read_struct(r, s, sizeof(*s));
    int32_t signo;
    __builtin_memcpy(&signo, s->info, sizeof(signo));
    if (signo < 1 || signo > 64 || signo == SIGKILL_NR || signo == SIGSTOP_NR)
        corrupt_value(r, "pending signal", (uint64_t)(uint32_t)signo);
    if (s->tid != 0 && !known_thread(img, s->tid))
        corrupt_value(r, "signal pending for an unknown thread", s->tid);
    img->nsignals++;
}

#define NOTIFY_SIGNAL 0
#define NOTIFY_NONE 1
#define NOTIFY_THREAD_ID 4

static void check_timespec(const struct reader *r, const int64_t t[2])
{
    if (t[0] < 0 || t[1] < 0 || t[1] >= 1000000000)
        corrupt(r, "timer time out of range");
}

static void read_timer(struct reader *r, struct image *img)
{
    if (img->ntimers >= MOSIX_CKPT_MAX_TIMERS)
        corrupt(r, "too many timers");
    struct mosix_ckpt_timer *t = &img->timers[img->ntimers];
    read_struct(r, t, sizeof(*t));
    if (t->id < 0 || (img->ntimers && t->id <= img->timers[img->ntimers - 1].id))
        corrupt_value(r, "timer id (ascending)", (uint64_t)(uint32_t)t->id);
    if (t->notify != NOTIFY_SIGNAL && t->notify != NOTIFY_NONE &&
        t->notify != (NOTIFY_SIGNAL | NOTIFY_THREAD_ID))
        corrupt_value(r, "timer notification", (uint64_t)(uint32_t)t->notify);
    if (t->notify != NOTIFY_NONE && (t->signo < 1 || t->signo > 64))
        corrupt_value(r, "timer signal", (uint64_t)(uint32_t)t->signo);
    if ((t->notify & NOTIFY_THREAD_ID) && !known_thread(img, t->tid))
        corrupt_value(r, "timer for an unknown thread", t->tid);
    check_timespec(r, t->interval);
    check_timespec(r, t->remaining);
    img->ntimers++;
}

/* A MAPFILE record: the file must be there as it was, checked now, before
 * anything is changed (a refusal leaves the caller as it was). */
static void read_mapfile(struct reader *r, struct image *img)
{
    if (img->nmapfiles >= MOSIX_CKPT_MAX_MAPFILES)
        corrupt(r, "too many MAPFILE records");
    struct mosix_ckpt_mapfile *f = &img->mapfiles[img->nmapfiles];
    if (r->rh.length < sizeof(*f))
        corrupt(r, "record too short");
    payload_read(r, f, sizeof(*f));
    uint32_t n = f->path_len;
    if (n == 0 || n != r->rh.length - sizeof(*f) || n >= MOSIX_CKPT_MAX_PATH || f->pad)
        corrupt(r, "MAPFILE path length");
    if (img->paths_used + n + 1 > MAPFILE_PATHS_ROOM)
        refuse("the image refers to too many files (their paths)");
    char *path = img->paths + img->paths_used;
    payload_read(r, path, n);
    payload_end(r);
    path[n] = '\0';
    for (uint32_t i = 0; i < n; i++)
        if (!path[i])
            corrupt(r, "MAPFILE path");
    if (path[0] != '/')
        corrupt(r, "MAPFILE path");
    img->mapfile_path[img->nmapfiles] = img->paths_used;
    img->paths_used += n + 1;
    img->nmapfiles++;
    mapfile_check(f, path);
}

void image_read_state(struct reader *r, struct image *img)
{
    expect(r, MOSIX_CKPT_KIND_PROCESS);
    read_struct(r, &img->proc, sizeof(img->proc));
    validate_process(r, &img->proc);
    skip_text(r, MOSIX_CKPT_KIND_OPTIONS, MOSIX_CKPT_MAX_RECORD_BYTES);
    read_cwd(r);
    if (skip_files(r, img) != MOSIX_CKPT_KIND_REGS)
        out_of_order(r);
    read_struct(r, &img->regs, sizeof(img->regs));
    validate_regs(r, &img->regs);
    expect(r, MOSIX_CKPT_KIND_XSTATE);
    read_struct(r, img->xstate, img->proc.xsave_size);
    validate_xstate(r, img, img->xstate);
    expect(r, MOSIX_CKPT_KIND_SIGACTIONS);
    read_struct(r, img->sigactions, sizeof(img->sigactions));
    validate_sigactions(r, img->sigactions);
    unsigned kind = record_next(r);
    while (kind == MOSIX_CKPT_KIND_THREAD) {
        read_thread(r, img);
        kind = record_next(r);
    }
    if (img->nthreads + 1 != img->proc.threads)
        corrupt_value(r, "THREAD records short of the PROCESS record's count", img->proc.threads);
    while (kind == MOSIX_CKPT_KIND_SIGNAL) {
        read_signal(r, img);
        kind = record_next(r);
    }
    while (kind == MOSIX_CKPT_KIND_TIMER) {
        read_timer(r, img);
        kind = record_next(r);
    }
    while (kind == MOSIX_CKPT_KIND_MAPFILE) {
        read_mapfile(r, img);
        kind = record_next(r);
    }
    if (kind != MOSIX_CKPT_KIND_AREA && kind != MOSIX_CKPT_KIND_END)
        out_of_order(r);
}

/* ------------------------------------------------------------ pre-copy rounds */

#define SPECIAL_FLAGS \
    (MOSIX_CKPT_AREA_VDSO | MOSIX_CKPT_AREA_VVAR | MOSIX_CKPT_AREA_VVAR_VCLOCK)

#define CHUNK (256u << 10) /* pages are read, then hashed while in the cache */

/* The areas the rounds mapped, ascending; each taken (kept) by the final
 * image's AREA of the same span flagged PRECOPIED, or unmapped before an area
 * that reaches past it is mapped. */
static struct {
    uint64_t start[MOSIX_CKPT_MAX_AREAS], end[MOSIX_CKPT_MAX_AREAS];
    uint32_t n, next; /* [next, n) still mapped and not taken */
} pre;

static void check_area_place(const struct mosix_ckpt_area *a);
__attribute__((noreturn)) static void area_refuse(const struct mosix_ckpt_area *a,
                                                  const char *what);

/* Unmap the pre-copied areas that start below end and were not taken. */
static void precopy_drop(uint64_t end)
{
    for (; pre.next < pre.n && pre.start[pre.next] < end; pre.next++)
        mem_unmap(pre.start[pre.next], pre.end[pre.next]);
}

/* The final image's area a: 1 if it is a pre-copied one, kept as it is. */
static int precopy_take(const struct reader *r, const struct mosix_ckpt_area *a)
{
    int want = (a->flags & MOSIX_CKPT_AREA_PRECOPIED) != 0;
    uint32_t i = pre.next;
    if (want && !(i < pre.n && pre.start[i] == a->start && pre.end[i] == a->end))
        area_refuse(a, "was not copied ahead");
    if (want && (a->flags & (SPECIAL_FLAGS | MOSIX_CKPT_AREA_SHARED | MOSIX_CKPT_AREA_FILE)))
        area_refuse(a, "cannot have been copied ahead");
    (void)r;
    if (want) {
        pre.next++;
        return 1;
    }
    precopy_drop(a->end);
    return 0;
}

static void read_pre_area(struct reader *r)
{
    struct mosix_ckpt_area a;
    if (r->rh.length < sizeof(a))
        corrupt(r, "record too short");
    payload_read(r, &a, sizeof(a));
    if (a.name_len != r->rh.length - sizeof(a) || a.name_len > MOSIX_CKPT_MAX_PATH)
        corrupt(r, "area name length");
    payload_skip(r);
    payload_end(r);
    check_area_place(&a);
    if (a.flags & ~(MOSIX_CKPT_AREA_STACK | MOSIX_CKPT_AREA_HEAP))
        area_refuse(&a, "cannot be copied ahead");
    if (pre.n == MOSIX_CKPT_MAX_AREAS)
        corrupt(r, "too many areas");
    if (pre.n && a.start < pre.end[pre.n - 1])
        area_refuse(&a, "overlaps the previous area or is out of order");
    pre.start[pre.n] = a.start;
    pre.end[pre.n++] = a.end;
    mem_map_area(&a); /* read and write: the final AREA sets the protection */
}

static void read_pre_pages(struct reader *r)
{
    struct mosix_ckpt_pages pg;
    if (r->rh.length < sizeof(pg))
        corrupt(r, "record too short");
    payload_read(r, &pg, sizeof(pg));
    if (pg.npages == 0 || pg.npages > MOSIX_CKPT_MAX_PAGES_PER_RECORD ||
        r->rh.length != sizeof(pg) + pg.npages * PAGE)
        corrupt_value(r, "page count", pg.npages);
    uint64_t len = pg.npages * PAGE;
    uint32_t i = 0;
    while (i < pre.n && pre.end[i] <= pg.addr)
        i++;
    if (pg.addr % PAGE || i == pre.n || pg.addr < pre.start[i] || len > pre.end[i] - pg.addr)
        corrupt_value(r, "pages outside the areas copied ahead at", pg.addr);
    mem_populate(pg.addr, len);
    for (uint64_t at = 0; at < len; at += CHUNK) {
        uint64_t n = len - at < CHUNK ? len - at : CHUNK;
        payload_read(r, (void *)(pg.addr + at), n);
    }
    payload_end(r);
}

int image_read_precopy(struct reader *r, struct specials *cur)
{
    unsigned kind = record_next(r);
    r->held = 1;
    if (kind != MOSIX_CKPT_KIND_PRE_AREA)
        return 0;
    if (!r->apply)
        refuse("a migration's pre-copied stream cannot be checked");
    mem_park_specials(cur);
    mem_teardown(cur);
    for (; kind == MOSIX_CKPT_KIND_PRE_AREA || kind == MOSIX_CKPT_KIND_PRE_PAGES;
         kind = record_next(r)) {
        if (kind == MOSIX_CKPT_KIND_PRE_AREA)
            read_pre_area(r);
        else
            read_pre_pages(r);
    }
    return 1;
}

/* ------------------------------------------------------------ AREA */

#define KNOWN_FLAGS (SPECIAL_FLAGS | MOSIX_CKPT_AREA_SHARED | MOSIX_CKPT_AREA_FILE | \
                     MOSIX_CKPT_AREA_STACK | MOSIX_CKPT_AREA_HEAP | MOSIX_CKPT_AREA_DELETED | \
                     MOSIX_CKPT_AREA_RESTORER | MOSIX_CKPT_AREA_REFERENCE | \
                     MOSIX_CKPT_AREA_PRECOPIED)
#define PROT_RWX 7u
#define PROT_R 1u
#define PROT_W 2u
#define PROT_X 4u

__attribute__((noreturn)) static void area_refuse(const struct mosix_ckpt_area *a,
                                                  const char *what)
{
    msg_begin();
    msg_str("area ");
    msg_range(a->start, a->end);
    msg_str(" ");
    msg_str(what);
    msg_refuse();
}

static int overlaps(uint64_t s1, uint64_t e1, uint64_t s2, uint64_t e2)
{
    return s1 < e2 && s2 < e1;
}

static const uint64_t *special_span(const struct image *img, uint32_t flag)
{
    if (flag == MOSIX_CKPT_AREA_VDSO)
        return img->proc.vdso;
    if (flag == MOSIX_CKPT_AREA_VVAR)
        return img->proc.vvar;
    return img->proc.vvar_vclock;
}

/* Where the area may be, whatever else is in the image. */
static void check_area_place(const struct mosix_ckpt_area *a)
{
    if (a->start >= MOSIX_CKPT_USER_HIGH || a->end > MOSIX_CKPT_USER_HIGH)
        area_refuse(a, "is in kernel space");
    if (a->start < MOSIX_CKPT_USER_LOW)
        area_refuse(a, "is below the lowest user address");
    if (a->start >= a->end)
        area_refuse(a, "is empty or reversed");
    if (a->start % PAGE || a->end % PAGE)
        area_refuse(a, "is not page-aligned");
    if (overlaps(a->start, a->end, MOSIX_CKPT_TRAMPOLINE,
                 MOSIX_CKPT_RESTORER_BASE + MOSIX_CKPT_RESTORER_SPAN))
        area_refuse(a, "overlaps the restorer");
}

static void check_area(const struct reader *r, const struct image *img, struct memory *m)
{
    const struct mosix_ckpt_area *a = &m->area;
    if (a->flags & ~KNOWN_FLAGS)
        corrupt_value(r, "unknown area flags", a->flags);
    if (a->prot & ~PROT_RWX)
        corrupt_value(r, "unknown protection", a->prot);
    check_area_place(a);
    if (a->start < m->prev_end)
        area_refuse(a, "overlaps the previous area or is out of order");
    if (a->flags & MOSIX_CKPT_AREA_RESTORER)
        area_refuse(a, "is a restorer's leftover");
    if ((a->flags & MOSIX_CKPT_AREA_SHARED) && (a->prot & PROT_W))
        area_refuse(a, "is writable shared memory");
    if (a->flags & MOSIX_CKPT_AREA_REFERENCE) {
        if ((a->flags & (MOSIX_CKPT_AREA_SHARED | MOSIX_CKPT_AREA_DELETED | SPECIAL_FLAGS)) ||
            !(a->flags & MOSIX_CKPT_AREA_FILE) || !(a->prot & PROT_R) || a->pgoff % PAGE ||
            a->mapfile >= img->nmapfiles)
            corrupt_value(r, "reference to a file in area at", a->start);
    } else if (a->mapfile) {
        corrupt_value(r, "file reference in an area without REFERENCE at", a->start);
    }
    if (++m->areas > MOSIX_CKPT_MAX_AREAS)
        corrupt(r, "too many areas");
    uint32_t special = a->flags & SPECIAL_FLAGS;
    if (special) {
        const uint64_t *s = special_span(img, special);
        if ((special & (special - 1)) || (m->special_seen & special) || s[0] != a->start ||
            s[1] != a->end)
            area_refuse(a, "does not match the process's vdso and vvar");
        m->special_seen |= special;
        return;
    }
    for (uint32_t f = MOSIX_CKPT_AREA_VDSO; f <= MOSIX_CKPT_AREA_VVAR_VCLOCK; f <<= 1) {
        const uint64_t *s = special_span(img, f);
        if (overlaps(a->start, a->end, s[0], s[1]))
            area_refuse(a, "overlaps the vdso or vvar");
    }
}

/* Facts about the whole image that single records cannot show. */
static void note_area(const struct image *img, struct memory *m)
{
    const struct mosix_ckpt_area *a = &m->area;
    const struct mosix_ckpt_process *p = &img->proc;
    if ((a->prot & PROT_X) && img->regs.rip >= a->start && img->regs.rip < a->end)
        m->rip_ok = 1;
    if (!(a->prot & PROT_W) || (a->flags & SPECIAL_FLAGS))
        return;
    if (p->tid_addr >= a->start && p->tid_addr + 4 <= a->end)
        m->tid_ok = 1;
    if (p->rseq_addr >= a->start && p->rseq_addr + p->rseq_len <= a->end)
        m->rseq_ok = 1;
}

_Static_assert(offsetof(struct mosix_ckpt_regs, rip) == 16 * 8, "THREAD regs[16] is rip");

static void note_thread_area(const struct image *img, struct memory *m)
{
    const struct mosix_ckpt_area *a = &m->area;
    int writable = (a->prot & PROT_W) && !(a->flags & SPECIAL_FLAGS);
    for (uint32_t i = 0; i < img->nthreads; i++) {
        const struct mosix_ckpt_thread *t = &img->threads[i];
        uint64_t rip = t->regs[16]; /* REG_NAMES: rip */
        if ((a->prot & PROT_X) && rip >= a->start && rip < a->end)
            m->thread_ok[i] |= MEM_RIP;
        if (writable && t->tid_addr >= a->start && t->tid_addr + 4 <= a->end)
            m->thread_ok[i] |= MEM_TID;
        if (writable && t->clear_tid >= a->start && t->clear_tid + 4 <= a->end)
            m->thread_ok[i] |= MEM_CLEAR_TID;
        if (writable && t->rseq_addr >= a->start && t->rseq_addr + t->rseq_len <= a->end)
            m->thread_ok[i] |= MEM_RSEQ;
    }
}

static const char *area_path(const struct image *img, const struct mosix_ckpt_area *a)
{
    return img->paths + img->mapfile_path[a->mapfile];
}

static void read_area(struct reader *r, const struct image *img, struct memory *m)
{
    static char name[MOSIX_CKPT_MAX_PATH + 1];
    struct mosix_ckpt_area *a = &m->area;
    if (r->rh.length < sizeof(*a))
        corrupt(r, "record too short");
    payload_read(r, a, sizeof(*a));
    if (a->name_len != r->rh.length - sizeof(*a) || a->name_len > MOSIX_CKPT_MAX_PATH)
        corrupt(r, "area name length");
    payload_read(r, name, a->name_len);
    payload_end(r);
    check_area(r, img, m);
    if (a->flags & MOSIX_CKPT_AREA_REFERENCE) {
        const struct mosix_ckpt_mapfile *f = &img->mapfiles[a->mapfile];
        if (a->name_len != f->path_len || !mem_equal(name, area_path(img, a), a->name_len))
            corrupt_value(r, "area named otherwise than the file it refers to at", a->start);
        m->ref_end = mapfile_end_in(a, f);
    }
    note_area(img, m);
    note_thread_area(img, m);
    m->have_area = 1;
    m->prev_end = a->end;
    m->next_page = a->start;
    if (precopy_take(r, a) || !r->apply || (a->flags & SPECIAL_FLAGS))
        return;
    if (a->flags & MOSIX_CKPT_AREA_REFERENCE)
        mapfile_map(a, &img->mapfiles[a->mapfile], area_path(img, a));
    else
        mem_map_area(a);
}

/* A REFERENCE area's pages in [from, to) are its file's: into the file's hash. */
static void hash_referenced(const struct reader *r, struct memory *m, uint64_t from, uint64_t to)
{
    if (to > m->ref_end)
        to = m->ref_end;
    if (r->apply && from < to)
        mxh_update(&m->ref_hash[m->area.mapfile], (const void *)from, to - from);
}

static void finish_area(const struct reader *r, struct memory *m)
{
    if (m->have_area && (m->area.flags & MOSIX_CKPT_AREA_REFERENCE))
        hash_referenced(r, m, m->next_page, m->area.end);
    if (m->have_area && r->apply && !(m->area.flags & SPECIAL_FLAGS))
        mem_finish_area(&m->area);
    m->have_area = 0;
}

/* ------------------------------------------------------------ PAGES */


static void read_pages(struct reader *r, struct memory *m)
{
    struct mosix_ckpt_pages pg;
    if (!m->have_area || (m->area.flags & SPECIAL_FLAGS))
        out_of_order(r);
    if (r->rh.length < sizeof(pg))
        corrupt(r, "record too short");
    payload_read(r, &pg, sizeof(pg));
    if (pg.npages == 0 || pg.npages > MOSIX_CKPT_MAX_PAGES_PER_RECORD ||
        r->rh.length != sizeof(pg) + pg.npages * PAGE)
        corrupt_value(r, "page count", pg.npages);
    uint64_t len = pg.npages * PAGE;
    if (pg.addr % PAGE || pg.addr < m->next_page || pg.addr > m->area.end ||
        len > m->area.end - pg.addr)
        corrupt_value(r, "pages outside their area at", pg.addr);
    if (m->area.flags & MOSIX_CKPT_AREA_REFERENCE) {
        if (len > m->ref_end - pg.addr || pg.addr > m->ref_end)
            corrupt_value(r, "pages past the end of the file the area refers to at", pg.addr);
        hash_referenced(r, m, m->next_page, pg.addr);
    }
    m->next_page = pg.addr + len;
    m->pages += pg.npages;
    if (!r->apply) {
        payload_skip(r);
    } else {
        mem_populate(pg.addr, len);
        for (uint64_t at = 0; at < len; at += CHUNK) {
            uint64_t n = len - at < CHUNK ? len - at : CHUNK;
            payload_read(r, (void *)(pg.addr + at), n);
        }
    }
    payload_end(r);
}

/* ------------------------------------------------------------ END */

static void read_end(struct reader *r, const struct image *img, const struct memory *m)
{
    struct mosix_ckpt_end e;
    read_struct(r, &e, sizeof(e));
    if (e.records != r->seq || e.areas != m->areas || e.pages != m->pages)
        corrupt(r, "counts differ from the image's");
    const struct mosix_ckpt_process *p = &img->proc;
    uint32_t want = (p->vdso[1] ? MOSIX_CKPT_AREA_VDSO : 0) |
                    (p->vvar[1] ? MOSIX_CKPT_AREA_VVAR : 0) |
                    (p->vvar_vclock[1] ? MOSIX_CKPT_AREA_VVAR_VCLOCK : 0);
    if (m->special_seen != want)
        corrupt(r, "vdso or vvar area missing");
    if (!m->rip_ok)
        corrupt_value(r, "resume address not in executable memory:", img->regs.rip);
    if (p->tid_addr && !m->tid_ok)
        corrupt_value(r, "thread id address not in writable memory:", p->tid_addr);
    if (p->rseq_len && !m->rseq_ok)
        corrupt_value(r, "rseq area not in writable memory:", p->rseq_addr);
    for (uint32_t i = 0; i < img->nthreads; i++) {
        const struct mosix_ckpt_thread *t = &img->threads[i];
        if (!(m->thread_ok[i] & MEM_RIP))
            corrupt_value(r, "a thread's resume address not in executable memory:", t->regs[16]);
        if (t->tid_addr && !(m->thread_ok[i] & MEM_TID))
            corrupt_value(r, "a thread's id address not in writable memory:", t->tid_addr);
        if (t->clear_tid && !(m->thread_ok[i] & MEM_CLEAR_TID))
            corrupt_value(r, "a thread's clear-child-tid address not in writable memory:",
                          t->clear_tid);
        if (t->rseq_len && !(m->thread_ok[i] & MEM_RSEQ))
            corrupt_value(r, "a thread's rseq area not in writable memory:", t->rseq_addr);
    }
    unsigned char extra;
    if (read_some(r->fd, &extra, 1) != 0)
        refuse("corrupted image (data after the end)");
    for (uint32_t i = 0; r->apply && i < img->nmapfiles; i++)
        mapfile_verify(&img->mapfiles[i], img->paths + img->mapfile_path[i],
                       mxh_final(&m->ref_hash[i]));
}

void image_read_memory(struct reader *r, const struct image *img)
{
    static struct memory m;
    for (uint32_t i = 0; i < img->nmapfiles; i++)
        mxh_init(&m.ref_hash[i], 0);
    for (;;) {
        switch (r->rh.kind) {
        case MOSIX_CKPT_KIND_AREA:
            finish_area(r, &m);
            read_area(r, img, &m);
            break;
        case MOSIX_CKPT_KIND_PAGES:
            read_pages(r, &m);
            break;
        case MOSIX_CKPT_KIND_END:
            finish_area(r, &m);
            precopy_drop(UINT64_MAX);
            read_end(r, img, &m);
            return;
        default:
            out_of_order(r);
        }
        (void)record_next(r);
    }
}
