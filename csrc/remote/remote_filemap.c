/* remote_filemap.c - mmap of a home file by a copy on a remote node: see remote_filemap.h.
 *
 * The requests are ordinary forwarded calls made by the supervisor itself,
 * marshalled by forward_marshal.c from and into its own memory, so the deputy
 * serves them like the copy's: no new frame, no second definition of a call.
 * What the kernel's mmap would say is kept:
 *   EBADF   the descriptor is not open (at home)
 *   EACCES  it is not open for reading
 *   ENODEV  it is not a regular file (a pipe, a socket, a directory, a device:
 *           the manual does not permit mapping devices)
 *   EINVAL  no length, or an offset that is not page-aligned */
#include "remote_filemap.h"

#include "forward.h"
#include "forward_table.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u

enum { STEP_FLAGS, STEP_STAT, STEP_READ, STEP_DONE };

/* Outputs of the supervisor's own requests land here (fwd_apply writes them). */
static struct stat st;
static unsigned char chunk[FWD_MAX_DATA];

long filemap_begin(struct filemap *m, const uint64_t mmap_args[6])
{
    memset(m, 0, sizeof(*m));
    m->memfd = -1;
    uint64_t len = mmap_args[1], off = mmap_args[5];
    if (len == 0 || off % PAGE != 0)
        return -EINVAL;
    m->fd = (int)mmap_args[4];
    if (m->fd > FWD_DIRECT_FD - FWD_DIRECT_MAX && m->fd <= FWD_DIRECT_FD)
        return -EBADF; /* a direct channel: never a descriptor of the process's */
    m->start = off;
    m->end = off + len < off ? UINT64_MAX : off + len;
    m->step = STEP_FLAGS;
    return 0;
}

static long ask(struct filemap *m, long nr, uint64_t a1, uint64_t a2, uint64_t a3, void *buf,
                size_t cap)
{
    uint64_t args[6] = {(uint64_t)(unsigned)m->fd, a1, a2, a3, 0, 0};
    m->nr = nr;
    memcpy(m->args, args, sizeof(args));
    return fwd_request(getpid(), nr, args, buf, cap);
}

long filemap_next(struct filemap *m, void *buf, size_t cap)
{
    if (m->error)
        return m->error;
    switch (m->step) {
    case STEP_FLAGS:
        return ask(m, 72 /* fcntl */, F_GETFL, 0, 0, buf, cap);
    case STEP_STAT:
        return ask(m, 5 /* fstat */, (uint64_t)(uintptr_t)&st, 0, 0, buf, cap);
    case STEP_READ:
        if (m->pos < m->end) {
            uint64_t want = m->end - m->pos;
            if (want > sizeof(chunk))
                want = sizeof(chunk); /* and the request clamps it to what fits */
            return ask(m, 17 /* pread64 */, (uint64_t)(uintptr_t)chunk, want, m->pos, buf, cap);
        }
        m->step = STEP_DONE;
        return 0;
    default:
        return 0;
    }
}

static void fail(struct filemap *m, long error)
{
    if (!m->error)
        m->error = error;
}

void filemap_reply(struct filemap *m, const void *reply, size_t len)
{
    long ret = fwd_apply(getpid(), m->nr, m->args, reply, len);
    switch (m->step) {
    case STEP_FLAGS:
        if (ret < 0)
            fail(m, ret); /* EBADF, as mmap says */
        else if ((ret & O_ACCMODE) == O_WRONLY)
            fail(m, -EACCES);
        else
            m->step = STEP_STAT;
        return;
    case STEP_STAT:
        if (ret < 0) {
            fail(m, ret);
            return;
        }
        if (!S_ISREG(st.st_mode)) {
            fail(m, -ENODEV);
            return;
        }
        m->memfd = memfd_create("mosix-filemap", MFD_CLOEXEC);
        if (m->memfd < 0 || ftruncate(m->memfd, st.st_size) < 0) {
            fail(m, -errno);
            return;
        }
        if (m->end > (uint64_t)st.st_size)
            m->end = (uint64_t)st.st_size; /* beyond: SIGBUS, as with the file */
        m->pos = m->start;
        m->step = STEP_READ;
        return;
    case STEP_READ:
        if (ret < 0) {
            fail(m, ret == -EINTR ? -EINTR : -EIO);
            return;
        }
        if (ret == 0) { /* the file shrank since fstat: the rest stays zero */
            m->pos = m->end;
            return;
        }
        for (size_t done = 0; done < (size_t)ret;) {
            ssize_t w = pwrite(m->memfd, chunk + done, (size_t)ret - done,
                               (off_t)(m->pos + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                fail(m, w < 0 ? -errno : -EIO);
                return;
            }
            done += (size_t)w;
        }
        m->pos += (uint64_t)ret;
        return;
    default:
        return;
    }
}

long filemap_install(struct filemap *m, int listener, uint64_t id)
{
    struct seccomp_notif_addfd add;
    memset(&add, 0, sizeof(add));
    add.id = id;
    add.flags = SECCOMP_ADDFD_FLAG_SETFD;
    add.srcfd = (uint32_t)m->memfd;
    add.newfd = (uint32_t)m->fd;
    add.newfd_flags = O_CLOEXEC;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0)
        return -errno;
    return 0;
}

void filemap_end(struct filemap *m)
{
    if (m->memfd >= 0)
        (void)close(m->memfd); /* a memory file: nothing to lose */
    m->memfd = -1;
}
