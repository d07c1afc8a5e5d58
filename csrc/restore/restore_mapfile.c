/* restore_mapfile.c - the files whose unchanged pages an image refers to (MAPFILE).
 *
 * A checkpoint file for recovery where it was taken stores, for private file
 * mappings, only the pages written since they were mapped; the others are the
 * file's.  Each file's identity (device, inode, size, modification time) is
 * checked when its MAPFILE record is read, before anything is changed; the
 * pages mapped from it are hashed as the image streams past and compared at
 * the end, before the program runs.  Either refusal names the file.  The
 * restorer runs as the program's user: it opens the paths as that user. */
#include "restore.h"

#include <asm/errno.h>
#include <asm/stat.h>
#include <linux/fcntl.h>
#include <linux/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#define S_IFMT_ 0170000
#define S_IFREG_ 0100000

__attribute__((noreturn)) static void refuse_file(const char *path, const char *why, long err)
{
    msg_begin();
    msg_str("the file ");
    msg_str(path);
    msg_str(why);
    if (err)
        msg_err(err);
    msg_refuse();
}

int mapfile_open(const struct mosix_ckpt_mapfile *f, const char *path)
{
    long fd = mosix_raw4(__NR_openat, AT_FDCWD, path,
                         O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0);
    if (fd < 0)
        refuse_file(path, " the image refers to cannot be opened", fd);
    struct stat st;
    long rc = mosix_raw2(__NR_fstat, fd, &st);
    if (rc < 0)
        refuse_file(path, " the image refers to cannot be examined", rc);
    uint64_t mtime_ns = (uint64_t)st.st_mtime * 1000000000ull + (uint64_t)st.st_mtime_nsec;
    if ((st.st_mode & S_IFMT_) != S_IFREG_ || st.st_dev != f->dev || st.st_ino != f->ino ||
        (uint64_t)st.st_size != f->size || mtime_ns != f->mtime_ns)
        refuse_file(path, " differs from when the checkpoint was taken (another file, size or "
                          "modification time): its pages are not in the image", 0);
    return (int)fd;
}

void mapfile_close(int fd)
{
    long rc = mosix_raw1(__NR_close, fd);
    if (rc < 0)
        refuse_file("descriptor", " cannot be closed", rc);
}

void mapfile_check(const struct mosix_ckpt_mapfile *f, const char *path)
{
    mapfile_close(mapfile_open(f, path));
}

void mapfile_map(const struct mosix_ckpt_area *a, const struct mosix_ckpt_mapfile *f,
                 const char *path)
{
    int fd = mapfile_open(f, path);
    uint64_t len = a->end - a->start;
    /* Writable while the stored pages are read in; mem_finish_area sets the real protection. */
    long rc = mosix_raw6(__NR_mmap, a->start, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, (long)a->pgoff);
    if (rc < 0 || (uint64_t)rc != a->start) {
        msg_begin();
        msg_str("cannot map ");
        msg_str(path);
        msg_str(" at ");
        msg_range(a->start, a->end);
        msg_err(rc < 0 ? rc : -EEXIST);
        msg_refuse();
    }
    mapfile_close(fd);
}

uint64_t mapfile_end_in(const struct mosix_ckpt_area *a, const struct mosix_ckpt_mapfile *f)
{
    uint64_t have = (f->size + PAGE - 1) / PAGE * PAGE;
    if (have <= a->pgoff)
        return a->start;
    uint64_t len = have - a->pgoff;
    return len < a->end - a->start ? a->start + len : a->end;
}

void mapfile_verify(const struct mosix_ckpt_mapfile *f, const char *path, uint64_t hash)
{
    if (hash != f->hash)
        refuse_file(path, " differs from when the checkpoint was taken (its contents): its "
                          "pages are not in the image", 0);
}
