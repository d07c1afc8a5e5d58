/* restore_private.c - the files of a moving process's private temporary
 * directories (mosrun -X, PRIVATE records).
 *
 * A process that moves takes its private files with it: on the remote node
 * (-F) the supervisor has made the directories (a tmpfs each, in the copy's
 * mount namespace) before the restorer runs; back home (-H) they are the
 * process's own, emptied when it left.  The restorer writes the files as the
 * records come, as the program's user; a directory must be a tmpfs (nothing of
 * the node's own is written), a file one plain name in it.  With mosrun -R the
 * launcher has filled them already (-P) and nothing is written here. */
#include "restore.h"

#include <asm/errno.h>
#include <asm/statfs.h>
#include <linux/fcntl.h>
#include <linux/magic.h>

#define S_IFMT_ 0170000
#define S_IFREG_ 0100000

static char directory[MOSIX_CKPT_MAX_PATH + 1];
static int have_directory;
static char cwd[MOSIX_CKPT_MAX_PATH + 1]; /* the CWD record's, or "" */
static char last_file[MOSIX_CKPT_MAX_PATH + 1]; /* the last FILE record's name, or "" */
static uint32_t last_mode;

__attribute__((noreturn)) static void refuse_private(const char *what, const char *name, long err)
{
    msg_begin();
    msg_str("private directory ");
    msg_str(directory);
    msg_str(what);
    if (name) {
        msg_str(" ");
        msg_str(name);
    }
    if (err)
        msg_err(err);
    msg_refuse();
}

int private_restoring(void)
{
    return migration.forward_sock >= 0 || migration.home;
}

void private_cwd(const char *path, size_t len)
{
    cwd[0] = '\0';
    if (len > MOSIX_CKPT_MAX_PATH)
        return;
    for (size_t i = 0; i < len; i++)
        if (path[i] == '\0')
            return;
    for (size_t i = 0; i < len; i++)
        cwd[i] = path[i];
    cwd[len] = '\0';
}

/* Whether the noted current directory is the directory (only regular files
 * live in one: nothing below it can be a directory). */
static int cwd_is_directory(void)
{
    size_t i = 0;
    while (directory[i] && cwd[i] == directory[i])
        i++;
    return directory[i] == '\0' && (cwd[i] == '\0' || (cwd[i] == '/' && cwd[i + 1] == '\0'));
}

void private_directory(const char *path, size_t len)
{
    if (len == 0 || len > MOSIX_CKPT_MAX_PATH || path[0] != '/')
        refuse("corrupted image (a private directory)");
    for (size_t i = 0; i < len; i++)
        directory[i] = path[i];
    directory[len] = '\0';
    have_directory = 1;
    last_file[0] = '\0';
    struct statfs fs;
    long rc = mosix_raw2(__NR_statfs, directory, &fs);
    if (rc < 0)
        refuse_private("", NULL, rc);
    if (fs.f_type != TMPFS_MAGIC)
        refuse_private(" is not private here", NULL, 0);
    if (cwd_is_directory()) {
        rc = mosix_raw1(__NR_chdir, directory);
        if (rc < 0)
            refuse_private(": cannot be the current directory", NULL, rc);
    }
}

/* File name (a plain name, checked by the caller) in the private directory,
 * opened with flags (no links followed, no terminal taken, close-on-exec; made
 * 0600 when created); what: the refusal's words when it cannot be. */
static long open_in_directory(const char *name, int flags, const char *what)
{
    long dir = mosix_raw4(__NR_openat, AT_FDCWD, directory,
                          O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (dir < 0)
        refuse_private("", NULL, dir);
    long fd = mosix_raw4(__NR_openat, dir, name, flags | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
    long rc = mosix_raw1(__NR_close, dir);
    if (fd < 0)
        refuse_private(what, name, fd);
    if (rc < 0)
        refuse_private(": close", NULL, rc);
    return fd;
}

int private_file_more(const char *name, size_t len, uint32_t mode)
{
    size_t i = 0;
    while (i < len && last_file[i] && name[i] == last_file[i])
        i++;
    if (i != len || last_file[i] || mode != last_mode)
        refuse("corrupted image (a private file's next part)");
    return (int)open_in_directory(last_file, O_WRONLY | O_APPEND, ": cannot write");
}

int private_file_open(const char *name, size_t len, uint32_t mode)
{
    if (!have_directory || len == 0 || (mode & S_IFMT_) != S_IFREG_ ||
        (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        refuse("corrupted image (a private file)");
    for (size_t i = 0; i < len; i++)
        if (name[i] == '/' || name[i] == '\0')
            refuse("corrupted image (a private file)");
    long fd = open_in_directory(name, O_WRONLY | O_CREAT | O_TRUNC, ": cannot create");
    long rc = mosix_raw2(__NR_fchmod, fd, mode & 07777);
    if (rc < 0)
        refuse_private(": cannot set the mode of", name, rc);
    for (size_t i = 0; i < len; i++)
        last_file[i] = name[i];
    last_file[len] = '\0';
    last_mode = mode;
    return (int)fd;
}

void private_file_write(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        long w = mosix_raw3(__NR_write, fd, p, n);
        if (w == -EINTR)
            continue;
        if (w <= 0)
            refuse_private(": cannot write a file", NULL, w < 0 ? w : -EIO);
        p += w;
        n -= (size_t)w;
    }
}

void private_file_close(int fd)
{
    long rc = mosix_raw1(__NR_close, fd);
    if (rc < 0)
        refuse_private(": cannot write a file", NULL, rc);
}
