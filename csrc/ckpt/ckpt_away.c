/* ckpt_away.c - the checkpoint of a process that runs on another node.
 *
 * Its image has two halves.  The copy on the remote node has the memory,
 * registers, signal state, timers: that node captures it (mosix-ckpt -r, the
 * copy held quiet: no forwarded call in flight, none taken) and streams the
 * image here.  The deputy at home has the program's descriptors with their
 * offsets, its current directory, umask, limits and parent: read here from
 * /proc (the deputy serves no call while the copy is held, so they stay as
 * they were at the copy's capture).  The result is an ordinary image of the
 * home pid, the same records in the same order (format.ORDER): the copy's
 * PROCESS with the home identity, OPTIONS (the copy's inherit and argv0, the
 * agent's checkpoint-* lines), the deputy's CWD, FILE and FILEDATA, then the
 * copy's PRIVATE (mosrun -X: the files live where the process runs), REGS,
 * XSTATE, SIGACTIONS, AREA and PAGES as they came, renumbered.
 *
 * The remote stream is checked record by record (header and payload checksums,
 * sequence numbers, the kinds' order, END's count) before anything of it is
 * written; a stream that is the one-line refusal of the remote capture makes
 * this a refusal of the same reason. */
#include "ckpt_capture_common.h"
#include "ckpt_hash.h"
#include "forward_wire.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGES_PIECE 1024u    /* pages per PAGES record written: well inside a chunk */
#define REFUSAL_MAX 1024

struct reader {
    int fd;
    uint32_t seq;
    unsigned char *buf;
    size_t cap;
};

/* ------------------------------------------------------------ reading */

static void read_full(struct reader *r, void *dst, size_t n)
{
    unsigned char *p = dst;
    while (n) {
        ssize_t got = read(r->fd, p, n);
        if (got < 0 && errno == EAGAIN) { /* the agents' sockets are non-blocking */
            struct pollfd pf = {r->fd, POLLIN, 0};
            if (poll(&pf, 1, -1) < 0 && errno != EINTR)
                ck_fail_errno("poll");
            ck_check_interrupted();
            continue;
        }
        if (got < 0 && errno == EINTR) {
            ck_check_interrupted();
            continue;
        }
        if (got < 0)
            ck_fail_errno("the image from the remote node");
        if (got == 0)
            ck_fail("the image from the remote node ends early");
        p += got;
        n -= (size_t)got;
    }
}

/* The next record: its header in *rh, its checked payload in r->buf. */
static void next_record(struct reader *r, struct mosix_ckpt_record_header *rh)
{
    read_full(r, rh, sizeof(*rh));
    if (mxh64(rh, offsetof(struct mosix_ckpt_record_header, head_hash), 0) != rh->head_hash)
        ck_fail("the image from the remote node: record %u: bad header checksum", r->seq);
    if (rh->seq != r->seq)
        ck_fail("the image from the remote node: record %u out of order", r->seq);
    if (rh->length > MOSIX_CKPT_MAX_RECORD_BYTES)
        ck_fail("the image from the remote node: record %u is too long", r->seq);
    if (rh->length > r->cap) {
        free(r->buf);
        r->cap = (size_t)rh->length;
        r->buf = ck_alloc(r->cap);
    }
    read_full(r, r->buf, (size_t)rh->length);
    if (mxh64(r->buf, (size_t)rh->length, 0) != rh->payload_hash)
        ck_fail("the image from the remote node: record %u: bad checksum", r->seq);
    r->seq++;
}

/* The file header; a refusal of the remote capture is refused here too. */
static void read_header(struct reader *r, struct mosix_ckpt_file_header *h)
{
    char *first = (char *)h;
    read_full(r, first, sizeof(MOSIX_CKPT_FAILED_PREFIX) - 1);
    if (memcmp(first, MOSIX_CKPT_FAILED_PREFIX, sizeof(MOSIX_CKPT_FAILED_PREFIX) - 1) == 0) {
        char line[REFUSAL_MAX];
        size_t n = 0;
        while (n < sizeof(line) - 1) {
            ssize_t got = read(r->fd, line + n, 1);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
                struct pollfd pf = {r->fd, POLLIN, 0};
                if (poll(&pf, 1, -1) < 0 && errno != EINTR)
                    ck_fail_errno("poll");
                ck_check_interrupted();
                continue;
            }
            if (got <= 0 || line[n] == '\n')
                break;
            n++;
        }
        line[n] = '\0';
        const char *why = strstr(line, " failed: ");
        ck_refuse("%s", why ? why + 9 : "its copy cannot be checkpointed");
    }
    read_full(r, first + sizeof(MOSIX_CKPT_FAILED_PREFIX) - 1,
              sizeof(*h) - (sizeof(MOSIX_CKPT_FAILED_PREFIX) - 1));
    if (memcmp(h->magic, MOSIX_CKPT_MAGIC, sizeof(h->magic)) != 0 ||
        mxh64(h, offsetof(struct mosix_ckpt_file_header, head_hash), 0) != h->head_hash ||
        h->version != MOSIX_CKPT_VERSION || h->arch != MOSIX_CKPT_ARCH ||
        h->page_size != MOSIX_CKPT_PAGE_SIZE || h->header_size != sizeof(*h))
        ck_fail("the image from the remote node: not an image of this format");
}

/* ------------------------------------------------------------ the order */

/* A kind's place in format.ORDER (AREA and PAGES share one). */
static int rank(unsigned kind)
{
    switch (kind) {
    case MOSIX_CKPT_KIND_PROCESS:
        return 0;
    case MOSIX_CKPT_KIND_OPTIONS:
        return 1;
    case MOSIX_CKPT_KIND_CWD:
        return 2;
    case MOSIX_CKPT_KIND_FILE:
        return 3;
    case MOSIX_CKPT_KIND_FILEDATA:
        return 4;
    case MOSIX_CKPT_KIND_PRIVATE:
        return 5;
    case MOSIX_CKPT_KIND_REGS:
        return 6;
    case MOSIX_CKPT_KIND_XSTATE:
        return 7;
    case MOSIX_CKPT_KIND_SIGACTIONS:
        return 8;
    case MOSIX_CKPT_KIND_THREAD:
        return 9;
    case MOSIX_CKPT_KIND_SIGNAL:
        return 10;
    case MOSIX_CKPT_KIND_TIMER:
        return 11;
    case MOSIX_CKPT_KIND_AREA:
    case MOSIX_CKPT_KIND_PAGES:
        return 12;
    case MOSIX_CKPT_KIND_END:
        return 13;
    default:
        return -1;
    }
}

static int repeated(unsigned kind)
{
    return kind == MOSIX_CKPT_KIND_FILE || kind == MOSIX_CKPT_KIND_FILEDATA ||
           kind == MOSIX_CKPT_KIND_THREAD || kind == MOSIX_CKPT_KIND_SIGNAL ||
           kind == MOSIX_CKPT_KIND_TIMER || kind == MOSIX_CKPT_KIND_PRIVATE ||
           kind == MOSIX_CKPT_KIND_AREA || kind == MOSIX_CKPT_KIND_PAGES;
}

/* Every kind that appears once, before the memory. */
static const unsigned once_before_memory[] = {
    MOSIX_CKPT_KIND_PROCESS, MOSIX_CKPT_KIND_OPTIONS,  MOSIX_CKPT_KIND_CWD,
    MOSIX_CKPT_KIND_REGS,    MOSIX_CKPT_KIND_XSTATE,   MOSIX_CKPT_KIND_SIGACTIONS,
};

struct order {
    int last_rank;
    unsigned seen[MOSIX_CKPT_KIND_PRIVATE + 1]; /* indexed by kinds rank() knows */
    _Static_assert(MOSIX_CKPT_KIND_PRIVATE >= MOSIX_CKPT_KIND_TIMER, "the highest kind");
};

static void check_order(struct order *o, const struct mosix_ckpt_record_header *rh)
{
    int rk = rank(rh->kind);
    if (rk < 0 || rk < o->last_rank || (!repeated(rh->kind) && o->seen[rh->kind]))
        ck_fail("the image from the remote node: record %u (kind %u) out of place", rh->seq,
                rh->kind);
    if (rh->kind == MOSIX_CKPT_KIND_PAGES && !o->seen[MOSIX_CKPT_KIND_AREA])
        ck_fail("the image from the remote node: pages before any area");
    if (rh->kind == MOSIX_CKPT_KIND_AREA || rh->kind == MOSIX_CKPT_KIND_END)
        for (size_t i = 0; i < sizeof(once_before_memory) / sizeof(once_before_memory[0]); i++)
            if (!o->seen[once_before_memory[i]])
                ck_fail("the image from the remote node: no record of kind %u",
                        once_before_memory[i]);
    o->seen[rh->kind]++;
    o->last_rank = rk;
}

/* ------------------------------------------------------------ the home half */

struct home_half {
    struct ck_files files;
    char cwd[MOSIX_CKPT_MAX_PATH];
    uint32_t ppid, uid, gid, umask;
    struct mosix_ckpt_process limits; /* only rlimits */
};

static uint32_t status_u32(const char *status, const char *key, int base)
{
    char value[256];
    uint64_t v;
    if (ck_status_value(status, key, value, sizeof(value)) < 0)
        ck_fail("/proc/PID/status: no %s", key);
    value[strcspn(value, " \t")] = '\0';
    if (ck_parse_u64(value, base, &v) < 0 || v > UINT32_MAX)
        ck_fail("/proc/PID/status: cannot parse %s", key);
    return (uint32_t)v;
}

/* Where the deputy's own descriptors begin (mosix_deputy.c puts them in the
 * 16 below min(RLIMIT_NOFILE, 4096)). */
static int own_from(int procfd)
{
    char text[8192];
    if (ck_read_small(procfd, "limits", text, sizeof(text)) < 0)
        ck_fail_errno("/proc/PID/limits");
    const char *line = strstr(text, "Max open files");
    unsigned long soft;
    char word[32];
    if (!line || sscanf(line + 14, "%31s", word) != 1)
        ck_fail("/proc/PID/limits: no open files limit");
    soft = strcmp(word, "unlimited") == 0 ? DEPUTY_FD_TOP : strtoul(word, NULL, 10);
    long top = soft > DEPUTY_FD_TOP ? DEPUTY_FD_TOP : (long)soft;
    return top - DEPUTY_OWN_FDS > 3 ? (int)(top - DEPUTY_OWN_FDS) : 3;
}

static void take_home_half(struct home_half *hh, pid_t pid, int procfd)
{
    char status[8192];
    if (ck_read_small(procfd, "status", status, sizeof(status)) < 0)
        ck_fail_errno("/proc/%d/status", (int)pid);
    hh->ppid = status_u32(status, "PPid", 10);
    hh->uid = status_u32(status, "Uid", 10); /* the real id comes first */
    hh->gid = status_u32(status, "Gid", 10);
    hh->umask = status_u32(status, "Umask", 8);
    ck_fill_rlimits(&hh->limits, pid, procfd);
    if (ck_readlink(procfd, "cwd", hh->cwd, sizeof(hh->cwd)) < 0)
        ck_fail_errno("the current directory of process %d", (int)pid);
    static struct ck_fdsnap snap;
    ck_own_from = own_from(procfd);
    ck_snap_fds(procfd, &snap);
    ck_collect_files(procfd, &snap, &hh->files); /* refuses the program's pipes and sockets */
}

/* ------------------------------------------------------------ writing */

static void record(struct ck_image *im, unsigned kind, const void *a, size_t alen)
{
    struct iovec part = {.iov_base = (void *)a, .iov_len = alen};
    ck_image_record(im, kind, &part, 1);
}

static int given(char *const *extra, int nextra, const char *line, size_t keylen)
{
    for (int i = 0; i < nextra; i++)
        if (strncmp(extra[i], line, keylen) == 0 && extra[i][keylen] == '=')
            return 1;
    return 0;
}

/* The copy's OPTIONS lines that extra does not replace, then extra. */
static void write_options(struct ck_image *im, const unsigned char *text, size_t len,
                          char *const *extra, int nextra)
{
    size_t cap = len + 1;
    for (int i = 0; i < nextra; i++)
        cap += strlen(extra[i]) + 1;
    char *out = ck_alloc(cap);
    size_t n = 0;
    for (size_t at = 0; at < len;) {
        const unsigned char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        const unsigned char *eq = memchr(text + at, '=', end - at);
        if (eq && !given(extra, nextra, (const char *)text + at, (size_t)(eq - text) - at)) {
            memcpy(out + n, text + at, end - at);
            n += end - at;
            out[n++] = '\n';
        }
        at = end + 1;
    }
    for (int i = 0; i < nextra; i++) {
        size_t l = strlen(extra[i]);
        memcpy(out + n, extra[i], l);
        n += l;
        out[n++] = '\n';
    }
    record(im, MOSIX_CKPT_KIND_OPTIONS, out, n);
    free(out);
}

static void write_process(struct ck_image *im, const unsigned char *payload, size_t len,
                          pid_t pid, const struct home_half *hh)
{
    struct mosix_ckpt_process p;
    if (len != sizeof(p))
        ck_fail("the image from the remote node: a PROCESS record of %zu bytes", len);
    memcpy(&p, payload, sizeof(p));
    p.pid = (uint32_t)pid;
    p.ppid = hh->ppid;
    p.uid = hh->uid;
    p.gid = hh->gid;
    p.umask = hh->umask;
    memcpy(p.rlimits, hh->limits.rlimits, sizeof(p.rlimits));
    record(im, MOSIX_CKPT_KIND_PROCESS, &p, sizeof(p));
}

/* A PAGES record in pieces of at most PAGES_PIECE pages. */
static void write_pages(struct ck_image *im, const unsigned char *payload, size_t len)
{
    struct mosix_ckpt_pages pg;
    if (len < sizeof(pg))
        ck_fail("the image from the remote node: a short PAGES record");
    memcpy(&pg, payload, sizeof(pg));
    if (pg.npages > (len - sizeof(pg)) / CK_PAGE || pg.npages * CK_PAGE != len - sizeof(pg))
        ck_fail("the image from the remote node: a PAGES record of the wrong length");
    const unsigned char *data = payload + sizeof(pg);
    for (uint64_t done = 0; done < pg.npages;) {
        uint64_t n = pg.npages - done < PAGES_PIECE ? pg.npages - done : PAGES_PIECE;
        struct mosix_ckpt_pages piece = {.addr = pg.addr + done * CK_PAGE, .npages = n};
        struct iovec parts[2] = {{.iov_base = &piece, .iov_len = sizeof(piece)},
                                 {.iov_base = (void *)(data + done * CK_PAGE),
                                  .iov_len = (size_t)(n * CK_PAGE)}};
        ck_image_record(im, MOSIX_CKPT_KIND_PAGES, parts, 2);
        im->pages += n;
        done += n;
    }
}

void ck_away_image(struct ck_image *im, int outfd, int may_direct, int infd, pid_t pid,
                   int procfd, char *const *extra, int nextra)
{
    static struct home_half hh;
    take_home_half(&hh, pid, procfd);
    struct reader r = {.fd = infd};
    struct mosix_ckpt_file_header h;
    read_header(&r, &h);
    struct order order = {.last_rank = 0};
    struct mosix_ckpt_record_header rh;
    next_record(&r, &rh);
    if (rh.kind != MOSIX_CKPT_KIND_PROCESS)
        ck_fail("the image from the remote node does not begin with PROCESS");
    check_order(&order, &rh);
    ck_image_start(im, outfd, may_direct, (uint32_t)pid, h.created_ns);
    write_process(im, r.buf, (size_t)rh.length, pid, &hh);
    for (;;) {
        next_record(&r, &rh);
        check_order(&order, &rh);
        switch (rh.kind) {
        case MOSIX_CKPT_KIND_OPTIONS:
            write_options(im, r.buf, (size_t)rh.length, extra, nextra);
            break;
        case MOSIX_CKPT_KIND_CWD: /* the deputy's directory and descriptors instead */
            record(im, MOSIX_CKPT_KIND_CWD, hh.cwd, strlen(hh.cwd));
            ck_write_files(im, pid, procfd, &hh.files);
            break;
        case MOSIX_CKPT_KIND_PRIVATE: /* mosrun -X: the files live with the copy */
            record(im, MOSIX_CKPT_KIND_PRIVATE, r.buf, (size_t)rh.length);
            break;
        case MOSIX_CKPT_KIND_FILE:
        case MOSIX_CKPT_KIND_FILEDATA:
            break; /* the copy's own (nothing of the program's: those are at home) */
        case MOSIX_CKPT_KIND_PAGES:
            write_pages(im, r.buf, (size_t)rh.length);
            break;
        case MOSIX_CKPT_KIND_END: {
            struct mosix_ckpt_end e;
            if (rh.length != sizeof(e))
                ck_fail("the image from the remote node: a bad END record");
            memcpy(&e, r.buf, sizeof(e));
            if (e.records != rh.seq)
                ck_fail("the image from the remote node: END counts %u records, not %u",
                        e.records, rh.seq);
            free(r.buf);
            ck_image_end(im);
            return;
        }
        default:
            if (rh.kind == MOSIX_CKPT_KIND_AREA)
                im->areas++;
            record(im, rh.kind, r.buf, (size_t)rh.length);
        }
        ck_check_interrupted();
    }
}
