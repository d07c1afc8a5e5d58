/* remote_filemap.h - mmap of a home file by a copy on a remote node (remote_filemap.c).
 *
 * The copy's descriptors are home's, so the kernel here has no file to map.
 * The supervisor (mosix-remote) makes one: it asks the deputy, through
 * ordinary forwarded calls on the channel, for the descriptor's access mode
 * (fcntl F_GETFL), its size and type (fstat) and the bytes the mapping covers
 * (pread64, a chunk at a time), puts them in a memory file of the same size,
 * installs that in the copy at the same descriptor number
 * (SECCOMP_IOCTL_NOTIF_ADDFD) and lets the copy's own mmap go on
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE).  A private mapping of it behaves as one
 * of the file at that moment: pages past the end give SIGBUS, writes stay in
 * the process.  The local descriptor is left in the copy (no call of the copy
 * reaches it: they all go home) and is replaced by the next file map. */
#ifndef MOSIX_REMOTE_FILEMAP_H
#define MOSIX_REMOTE_FILEMAP_H

#include <stddef.h>
#include <stdint.h>

struct filemap {
    int fd;            /* the descriptor: home's number, and the copy's local one */
    uint64_t start;    /* the file's bytes the mapping covers: [start, end) */
    uint64_t end;
    uint64_t pos;      /* next byte to ask for */
    int step;          /* what the last request asked (remote_filemap.c) */
    long nr;           /* its call and arguments, to apply the reply */
    uint64_t args[6];
    int memfd;         /* the memory file, or -1 */
    long error;        /* -errno to answer the copy's mmap with, or 0 */
};

/* Start for mmap(args): 0, or the -errno to answer at once (EINVAL as the
 * kernel would say it, EBADF for the direct channel's number). */
long filemap_begin(struct filemap *m, const uint64_t mmap_args[6]);

/* The next request for the deputy into buf: its length (> 0); 0 when the
 * memory file is ready to install; or -errno to answer the mmap with. */
long filemap_next(struct filemap *m, void *buf, size_t cap);

/* The deputy's reply to the last request. */
void filemap_reply(struct filemap *m, const void *reply, size_t len);

/* Put the memory file at the copy's descriptor number for notification id:
 * 0, or -errno (the notification is gone: ENOENT). */
long filemap_install(struct filemap *m, int listener, uint64_t id);

/* Release the memory file (always, after begin). */
void filemap_end(struct filemap *m);

#endif
