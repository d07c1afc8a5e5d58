/* ckpt_capture_stream.c - the image stream: records assembled in chunks, a
 * thread writing them.
 *
 * Writes are strictly sequential (the same bytes go down a pipe or socket for
 * migration).  The capturing thread builds records directly in one of a few
 * large chunks (pages are read from the copy straight into place, after room
 * for their record header); a writer thread writes full chunks in order, so
 * reading and checksumming the next pages overlaps writing the last ones.
 *
 * On a file of our own (-o) the chunks are written with O_DIRECT when the file
 * system takes it: no copy into the page cache, the disk is handed the chunk.
 * Measured here (ext4 on virtio, 1 GiB image): 0.44-0.62 s with O_DIRECT,
 * 1.6-3.4 s through the page cache (the copy into freshly allocated page-cache
 * memory is what costs: 0.5-5 GB/s from one run to the next on this VM), dd of
 * the same size with conv=fsync 0.53-3.2 s.  O_DIRECT needs block-aligned
 * offsets and lengths: a chunk is written up to its last whole block and the
 * rest is carried to the start of the next one (always: it keeps page cache
 * writes whole pages too); the last bytes of the image are written without it. */
#include "ckpt_capture_common.h"
#include "ckpt_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_BYTES (8u << 20)
#define NCHUNKS 4
#define BLOCK 4096u                /* O_DIRECT alignment (and a page) */
#define MIN_PAGES_ROOM (256u << 10) /* less room left than this: take a fresh chunk */
#define HEAD_ROOM (sizeof(struct mosix_ckpt_record_header) + sizeof(struct mosix_ckpt_pages))

enum chunk_state { CHUNK_FREE, CHUNK_FILLING, CHUNK_SEALED };

struct chunk {
    unsigned char *buf;
    size_t len;  /* bytes filled */
    size_t wlen; /* bytes the writer writes (the rest is carried over) */
    int last;    /* the image's end: write everything */
    enum chunk_state state;
};

struct ck_stream {
    int fd;
    int regular;      /* fsync at the end */
    int direct;       /* O_DIRECT is on (the writer may turn it off) */
    struct chunk c[NCHUNKS];
    int fill; /* being filled (capturing thread) */
    int next; /* to be written next (writer) */
    int failed;
    char err[sizeof(ck_why)];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

int ck_no_direct;
int ck_migrating;

/* ------------------------------------------------------------ the writer */

static int wait_writable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int r = poll(&p, 1, -1);
        if (r > 0)
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* O_DIRECT off: the file system refused it, or for the image's unaligned end. */
static int direct_off(struct ck_stream *s)
{
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) < 0)
        return -1;
    s->direct = 0;
    return 0;
}

static int write_bytes(struct ck_stream *s, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(s->fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN && wait_writable(s->fd) == 0)
            continue;
        if (w < 0 && errno == EINVAL && s->direct && direct_off(s) == 0)
            continue; /* this file system takes O_DIRECT at open but not these writes */
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            snprintf(s->err, sizeof(s->err), "writing the image: %s", strerror(errno));
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int write_chunk(struct ck_stream *s, struct chunk *c)
{
    size_t aligned = c->last && s->direct ? c->wlen & ~(size_t)(BLOCK - 1) : c->wlen;
    if (write_bytes(s, c->buf, aligned) < 0)
        return -1;
    if (aligned < c->wlen) {
        if (direct_off(s) < 0) {
            snprintf(s->err, sizeof(s->err), "writing the image: fcntl: %s", strerror(errno));
            return -1;
        }
        if (write_bytes(s, c->buf + aligned, c->wlen - aligned) < 0)
            return -1;
    }
    return 0;
}

static void *writer(void *arg)
{
    struct ck_stream *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct chunk *c = &s->c[s->next];
        while (c->state != CHUNK_SEALED)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        int rc = write_chunk(s, c);
        pthread_mutex_lock(&s->mu);
        if (rc < 0)
            s->failed = 1;
        c->state = CHUNK_FREE;
        s->next = (s->next + 1) % NCHUNKS;
        int last = c->last;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (rc < 0 || last)
            return NULL;
    }
}

/* ------------------------------------------------------------ chunks */

static void check_writer(struct ck_stream *s)
{
    if (s->failed)
        ck_fail("%s", s->err);
    ck_check_interrupted();
}

static void wait_a_while(struct ck_stream *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100 * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&s->cv, &s->mu, &until);
}

/* Hand the chunk being filled to the writer; fill the next one (the bytes
 * O_DIRECT cannot write yet start it). */
static void seal(struct ck_stream *s, int last)
{
    struct chunk *c = &s->c[s->fill];
    size_t carry = last ? 0 : c->len % BLOCK;
    pthread_mutex_lock(&s->mu);
    c->wlen = c->len - carry;
    c->last = last;
    c->state = CHUNK_SEALED;
    pthread_cond_broadcast(&s->cv);
    if (last) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    int n = (s->fill + 1) % NCHUNKS;
    while (s->c[n].state != CHUNK_FREE && !s->failed && !ck_interrupted)
        wait_a_while(s); /* a reader that stopped reading: termination signals still count */
    s->c[n].state = CHUNK_FILLING;
    pthread_mutex_unlock(&s->mu);
    check_writer(s);
    memcpy(s->c[n].buf, c->buf + c->wlen, carry); /* the writer does not touch these */
    s->c[n].len = carry;
    s->fill = n;
}

/* len contiguous bytes in the chunk being filled. */
static unsigned char *reserve(struct ck_stream *s, size_t len)
{
    if (len > CHUNK_BYTES - BLOCK)
        ck_fail("internal error: %zu bytes in one piece", len);
    if (CHUNK_BYTES - s->c[s->fill].len < len)
        seal(s, 0);
    return s->c[s->fill].buf + s->c[s->fill].len;
}

static void commit(struct ck_image *im, size_t len)
{
    im->s->c[im->s->fill].len += len;
    im->bytes += len;
}

/* The record header before a payload already in place at h + 32. */
static void put_header(struct ck_image *im, unsigned char *h, unsigned kind, uint64_t len)
{
    struct mosix_ckpt_record_header rh;
    memset(&rh, 0, sizeof(rh));
    rh.kind = (uint16_t)kind;
    rh.seq = im->seq++;
    rh.length = len;
    rh.payload_hash = mxh64(h + sizeof(rh), len, 0);
    rh.head_hash = mxh64(&rh, offsetof(struct mosix_ckpt_record_header, head_hash), 0);
    memcpy(h, &rh, sizeof(rh));
}

/* ------------------------------------------------------------ the API */

static void open_stream(struct ck_stream *s, int fd, int may_direct)
{
    struct stat st;
    s->fd = fd;
    if (fstat(fd, &st) < 0)
        ck_fail_errno("the image's descriptor");
    if (S_ISREG(st.st_mode)) {
        off_t at = lseek(fd, 0, SEEK_CUR); /* where the image starts (not a seek) */
        if (at < 0)
            ck_fail_errno("the image's descriptor");
        s->regular = 1;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
            ck_fail_errno("the image's descriptor");
        /* O_DIRECT where the file system takes it (tmpfs does not: EINVAL) */
        if (may_direct && !ck_no_direct && at % BLOCK == 0 &&
            fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
            s->direct = 1;
    }
}

void ck_image_start(struct ck_image *im, int fd, int may_direct, uint32_t pid, uint64_t created_ns)
{
    memset(im, 0, sizeof(*im));
    struct ck_stream *s = im->s = ck_alloc(sizeof(*s));
    open_stream(s, fd, may_direct);
    for (int i = 0; i < NCHUNKS; i++) {
        s->c[i].buf = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (s->c[i].buf == MAP_FAILED)
            ck_fail_errno("mmap of the image's buffers");
    }
    s->c[0].state = CHUNK_FILLING;
    if (pthread_mutex_init(&s->mu, NULL) || pthread_cond_init(&s->cv, NULL))
        ck_fail("pthread_mutex_init");
    sigset_t all, old;
    sigfillset(&all); /* termination signals go to the capturing thread */
    if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0 ||
        pthread_create(&s->thread, NULL, writer, s) != 0 ||
        pthread_sigmask(SIG_SETMASK, &old, NULL) != 0)
        ck_fail("cannot start the writer thread");

    struct mosix_ckpt_file_header h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, MOSIX_CKPT_MAGIC, sizeof(h.magic));
    h.version = MOSIX_CKPT_VERSION;
    h.arch = MOSIX_CKPT_ARCH;
    h.page_size = MOSIX_CKPT_PAGE_SIZE;
    h.header_size = sizeof(h);
    h.pid = pid;
    h.created_ns = created_ns;
    h.head_hash = mxh64(&h, offsetof(struct mosix_ckpt_file_header, head_hash), 0);
    memcpy(reserve(s, sizeof(h)), &h, sizeof(h));
    commit(im, sizeof(h));
}

void ck_image_record(struct ck_image *im, unsigned kind, const struct iovec *parts, int nparts)
{
    uint64_t len = 0;
    for (int i = 0; i < nparts; i++)
        len += parts[i].iov_len;
    size_t total = sizeof(struct mosix_ckpt_record_header) + (size_t)len;
    unsigned char *h = reserve(im->s, total), *p = h + sizeof(struct mosix_ckpt_record_header);
    for (int i = 0; i < nparts; i++) {
        memcpy(p, parts[i].iov_base, parts[i].iov_len);
        p += parts[i].iov_len;
    }
    put_header(im, h, kind, len);
    commit(im, total);
}

unsigned char *ck_image_pages_begin(struct ck_image *im, size_t want, size_t *len)
{
    struct ck_stream *s = im->s;
    size_t room = (CHUNK_BYTES - s->c[s->fill].len - HEAD_ROOM) / BLOCK * BLOCK;
    if (CHUNK_BYTES < s->c[s->fill].len + HEAD_ROOM + BLOCK ||
        (room < want && room < MIN_PAGES_ROOM)) {
        seal(s, 0);
        room = (CHUNK_BYTES - s->c[s->fill].len - HEAD_ROOM) / BLOCK * BLOCK;
    }
    *len = want < room ? want : room;
    return s->c[s->fill].buf + s->c[s->fill].len + HEAD_ROOM;
}

static int page_is_zero(const unsigned char *p)
{
    static const unsigned char zero[CK_PAGE];
    uint64_t first;
    memcpy(&first, p, sizeof(first));
    return first == 0 && memcmp(p, zero, CK_PAGE) == 0;
}

/* One PAGES record at out for the run of npages at data (moved down to follow
 * its header if it is not there already); the bytes it takes. */
static size_t pages_record(struct ck_image *im, unsigned char *out, uint64_t addr,
                           const unsigned char *data, size_t npages)
{
    unsigned char *payload = out + sizeof(struct mosix_ckpt_record_header);
    struct mosix_ckpt_pages rec = {.addr = addr, .npages = npages};
    unsigned char *dst = payload + sizeof(rec);
    if (dst != data)
        memmove(dst, data, npages * CK_PAGE);
    memcpy(payload, &rec, sizeof(rec));
    put_header(im, out, im->pages_kind ? im->pages_kind : MOSIX_CKPT_KIND_PAGES,
               sizeof(rec) + npages * CK_PAGE);
    if (im->pages_kind) /* pre-copy: END counts the final image's pages */
        im->pre_pages += npages;
    else
        im->pages += npages;
    return HEAD_ROOM + npages * CK_PAGE;
}

void ck_image_pages_end(struct ck_image *im, uint64_t addr, size_t bytes)
{
    struct ck_stream *s = im->s;
    unsigned char *out = s->c[s->fill].buf + s->c[s->fill].len;
    unsigned char *data = out + HEAD_ROOM;
    size_t used = 0, pages = bytes / CK_PAGE, run = 0, i = 0;
    for (; i <= pages; i++) {
        if (i < pages && (im->keep_zeros || !page_is_zero(data + i * CK_PAGE))) {
            run++;
            continue;
        }
        if (run) /* runs only move down: out + used never passes their data */
            used += pages_record(im, out + used, addr + (i - run) * CK_PAGE,
                                 data + (i - run) * CK_PAGE, run);
        run = 0;
    }
    commit(im, used);
    check_writer(s);
}

void ck_image_end(struct ck_image *im)
{
    struct ck_stream *s = im->s;
    struct mosix_ckpt_end e;
    memset(&e, 0, sizeof(e));
    e.records = im->seq;
    e.areas = (uint32_t)im->areas;
    e.pages = im->pages;
    struct iovec part = {.iov_base = &e, .iov_len = sizeof(e)};
    ck_image_record(im, MOSIX_CKPT_KIND_END, &part, 1);
    seal(s, 1);
    pthread_mutex_lock(&s->mu); /* the writer is done when the last chunk is free again */
    while (s->c[s->fill].state != CHUNK_FREE && !s->failed && !ck_interrupted)
        wait_a_while(s);
    pthread_mutex_unlock(&s->mu);
    check_writer(s);
    if (pthread_join(s->thread, NULL) != 0)
        ck_fail("pthread_join");
    if (s->regular && fsync(s->fd) < 0)
        ck_fail_errno("writing the image: fsync");
    if (s->direct && direct_off(s) < 0)
        ck_fail_errno("fcntl");
    for (int i = 0; i < NCHUNKS; i++)
        if (munmap(s->c[i].buf, CHUNK_BYTES) < 0)
            ck_fail_errno("munmap");
    free(s);
    im->s = NULL;
}
