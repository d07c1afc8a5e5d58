/* deputy_resume.c - the files of a process resumed at home from a checkpoint.
 *
 * When the node a process ran on is lost, the deputy executes the restorer on
 * the process's last checkpoint in place: the process keeps the deputy's
 * descriptors, whose offsets are where its copy had got to, past the
 * checkpoint.  Before that, each regular file the image names, still open at
 * its descriptor (same device and inode), goes back to the checkpoint's
 * offset, so what the process writes again overwrites what it wrote after the
 * checkpoint; a file open for appending that has grown since is cut back to
 * its size then (an append always goes to the end), but only when the last
 * extension of the file was the program's own write (deputy_note_write): a log
 * that another process appended to since keeps every byte, and the program's
 * lines after the checkpoint then come twice.  The file ends as an
 * uninterrupted run leaves it.  The image is read with pread (the restorer
 * reads it from its start afterwards) and every record used is checked. */
#include "deputy_resume.h"

#include "ckpt_format.h"
#include "ckpt_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILE_RECORD_MAX (sizeof(struct mosix_ckpt_file) + 4096) /* the struct, a path */
#define RECORDS_MAX (4 + 2 * MOSIX_CKPT_MAX_FILES)               /* before REGS, at most */

#define NOTED_FDS 1024 /* the program's descriptors below the deputy's own */

/* Per descriptor: the file and its size just after the program's last write. */
static struct {
    uint64_t dev, ino;
    int64_t size; /* 0: no write noted */
} noted[NOTED_FDS];

void deputy_note_write(long nr, const uint64_t args[6], int64_t ret)
{
    if (ret <= 0 || args[0] >= NOTED_FDS)
        return;
    if (nr != SYS_write && nr != SYS_writev && nr != SYS_pwrite64 && nr != SYS_pwritev &&
        nr != SYS_pwritev2)
        return;
    struct stat st;
    int fd = (int)args[0];
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    noted[fd].dev = (uint64_t)st.st_dev;
    noted[fd].ino = (uint64_t)st.st_ino;
    noted[fd].size = (int64_t)st.st_size;
}

/* Whether the program's own write made the file on fd (st) as long as it is. */
static int last_extended_by_program(int fd, const struct stat *st)
{
    return fd >= 0 && fd < NOTED_FDS && noted[fd].size == (int64_t)st->st_size &&
           noted[fd].dev == (uint64_t)st->st_dev && noted[fd].ino == (uint64_t)st->st_ino;
}

static int fail(char *why, size_t cap, const char *what)
{
    snprintf(why, cap, "%s", what);
    return -1;
}

static int read_at(int fd, void *buf, size_t len, uint64_t at)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(at + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/* One FILE record: its descriptor back to the checkpoint's offset (and size). */
static int rewind_one(const struct mosix_ckpt_file *f, char *why, size_t cap)
{
    if (f->kind != MOSIX_CKPT_FILE_REGULAR || f->offset < 0 || f->size < 0)
        return 0;
    struct stat st;
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != f->dev ||
        (uint64_t)st.st_ino != f->ino)
        return 0; /* another file there now (or none): not the checkpoint's */
    int flags = fcntl(f->fd, F_GETFL);
    if (flags < 0)
        return 0;
    if ((flags & O_APPEND) && (flags & O_ACCMODE) != O_RDONLY && st.st_size > f->size &&
        last_extended_by_program(f->fd, &st) && ftruncate(f->fd, f->size) < 0) {
        snprintf(why, cap, "descriptor %d: cannot cut it back to %lld bytes: %s", f->fd,
                 (long long)f->size, strerror(errno));
        return -1;
    }
    if (lseek(f->fd, f->offset, SEEK_SET) < 0) {
        snprintf(why, cap, "descriptor %d: cannot seek to %lld: %s", f->fd,
                 (long long)f->offset, strerror(errno));
        return -1;
    }
    return 0;
}

int deputy_rewind_files(int image, char *why, size_t cap)
{
    struct mosix_ckpt_file_header h;
    if (read_at(image, &h, sizeof(h), 0) < 0 ||
        memcmp(h.magic, MOSIX_CKPT_MAGIC, sizeof(h.magic)) != 0 ||
        h.version != MOSIX_CKPT_VERSION ||
        h.head_hash != mxh64(&h, offsetof(struct mosix_ckpt_file_header, head_hash), 0))
        return fail(why, cap, "the checkpoint's file header is not readable");
    uint64_t at = sizeof(h);
    for (uint32_t seq = 0; seq < RECORDS_MAX; seq++) {
        struct mosix_ckpt_record_header r;
        if (read_at(image, &r, sizeof(r), at) < 0 ||
            r.head_hash != mxh64(&r, offsetof(struct mosix_ckpt_record_header, head_hash), 0) ||
            r.seq != seq || r.length > MOSIX_CKPT_MAX_RECORD_BYTES)
            return fail(why, cap, "the checkpoint's records are not readable");
        at += sizeof(r);
        switch (r.kind) {
        case MOSIX_CKPT_KIND_PROCESS:
        case MOSIX_CKPT_KIND_OPTIONS:
        case MOSIX_CKPT_KIND_CWD:
        case MOSIX_CKPT_KIND_FILEDATA:
            break;
        case MOSIX_CKPT_KIND_FILE: {
            unsigned char payload[FILE_RECORD_MAX];
            struct mosix_ckpt_file f;
            if (r.length < sizeof(f) || r.length > sizeof(payload) ||
                read_at(image, payload, r.length, at) < 0 ||
                r.payload_hash != mxh64(payload, r.length, 0))
                return fail(why, cap, "a file record of the checkpoint is not readable");
            memcpy(&f, payload, sizeof(f));
            if (f.fd < 0 || f.fd >= MOSIX_CKPT_MAX_FILES)
                return fail(why, cap, "a file record of the checkpoint is not readable");
            if (rewind_one(&f, why, cap) < 0)
                return -1;
            break;
        }
        default:
            return 0; /* past the files */
        }
        at += r.length;
    }
    return fail(why, cap, "the checkpoint has too many records before its registers");
}
