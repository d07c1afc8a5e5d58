/* deputy_home.c - the image of a process coming home, checked before it is used.
 *
 * The restorer executed in place replaces the deputy: if it refused the
 * image then, the process would be gone with its copy.  So the image is first
 * read whole from the connection (the capturer keeps it open until home says
 * whether the process came home: the stream ends with its END record, not
 * with the connection) into a memory file, and the restorer checks it there
 * (-c: read and verify all, change nothing) in a child.  Only an image it
 * accepts is restored in place; otherwise the deputy goes on serving the copy,
 * which resumes where it runs. */
#include "deputy_home.h"

#include "ckpt_format.h"
#include "forward_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int say(char *why, size_t cap, const char *what, int err)
{
    snprintf(why, cap, "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    return -1;
}

/* Copy len bytes from one descriptor to the other. */
static int copy_bytes(int from, int to, uint64_t len)
{
    static unsigned char chunk[1 << 16];
    while (len) {
        size_t n = len < sizeof(chunk) ? (size_t)len : sizeof(chunk);
        int rc = mosix_read_exact(from, chunk, n, EPIPE);
        if (rc == 0)
            rc = mosix_write_exact(to, chunk, n);
        if (rc < 0)
            return rc;
        len -= n;
    }
    return 0;
}

/* A capture that refused sends its one line instead of an image ("mosrun:
 * checkpoint of process PID failed: REASON"): that reason, read to the line's
 * end (head: the got bytes read so far). */
static int refusal(int from, const char *head, size_t got, char *why, size_t cap)
{
    char line[512];
    size_t n = got < sizeof(line) - 1 ? got : sizeof(line) - 1;
    memcpy(line, head, n);
    while (n < sizeof(line) - 1 && memchr(line, '\n', n) == NULL) {
        ssize_t r = read(from, line + n, sizeof(line) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    line[n] = '\0';
    line[strcspn(line, "\n")] = '\0';
    const char *reason = strstr(line, " failed: ");
    return say(why, cap, reason ? reason + strlen(" failed: ") : line, 0);
}

int deputy_take_image(int from, char *why, size_t cap)
{
    char head[sizeof(struct mosix_ckpt_file_header)];
    size_t got = 0;
    while (got < sizeof(head)) {
        ssize_t r = read(from, head + got, sizeof(head) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got >= 8 && memcmp(head, "mosrun: ", 8) == 0)
        return refusal(from, head, got, why, cap);
    if (got < sizeof(head))
        return say(why, cap, "the image did not arrive whole", EPIPE);
    int mem = memfd_create("mosix-image", MFD_CLOEXEC);
    if (mem < 0)
        return say(why, cap, "memfd_create", errno);
    int rc = mosix_write_exact(mem, head, sizeof(head));
    /* records as they come, through END (the restorer checks them) */
    for (;;) {
        struct mosix_ckpt_record_header r;
        if (rc == 0)
            rc = mosix_read_exact(from, &r, sizeof(r), EPIPE);
        if (rc == 0)
            rc = mosix_write_exact(mem, &r, sizeof(r));
        if (rc == 0 && r.length > MOSIX_CKPT_MAX_RECORD_BYTES)
            rc = -EPROTO;
        if (rc == 0)
            rc = copy_bytes(from, mem, r.length);
        if (rc < 0 || r.kind == MOSIX_CKPT_KIND_END)
            break;
    }
    if (rc == 0 && lseek(mem, 0, SEEK_SET) < 0)
        rc = -errno;
    if (rc < 0) {
        (void)close(mem);
        return say(why, cap, "the image did not arrive whole", -rc);
    }
    return mem;
}

/* The child between: SIGCHLD its own (not the deputy's handler, which writes
 * to the deputy's signal pipe); the grandchild executes mosix-restore -c, its
 * complaint on errfd; the child ends with the grandchild's status.  The
 * deputy has threads (the direct channels' servers), and this child is a copy
 * of one of them: a lock another thread held at the clone stays held here, so
 * the grandchild is made by the raw call, not by fork(), whose handlers take
 * libc's locks (malloc's, stdio's). */
_Noreturn static void check_in_grandchild(const char *restorer, int image, int errfd)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    if (sigaction(SIGCHLD, &dfl, NULL) < 0)
        _exit(126);
    pid_t grandchild = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (grandchild < 0)
        _exit(126);
    if (grandchild == 0) {
        char fdtext[16], errtext[16];
        int in = dup(image), err = dup(errfd); /* without close-on-exec */
        if (in < 0 || err < 0)
            _exit(126);
        snprintf(fdtext, sizeof(fdtext), "%d", in);
        snprintf(errtext, sizeof(errtext), "%d", err);
        char *argv[] = {(char *)restorer, "-c", "-p", "mosrun", "-e", errtext, fdtext, NULL};
        extern char **environ;
        execve(restorer, argv, environ);
        dprintf(err, "mosrun: cannot execute %s: %s\n", restorer, strerror(errno));
        _exit(126);
    }
    int st;
    while (waitpid(grandchild, &st, 0) < 0)
        if (errno != EINTR)
            _exit(126);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 125);
}

int deputy_check_image(const char *restorer, int image, char *why, size_t cap)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return say(why, cap, "pipe2", errno);
    /* The check runs in a grandchild: its end would send the deputy a SIGCHLD,
     * which it would pass on to the program as its own.  The child between,
     * made without an exit signal (clone flags 0; it never executes anything,
     * which would make its exit signal SIGCHLD again), waits for it. */
    pid_t child = (pid_t)syscall(SYS_clone, 0UL, 0UL, 0UL, 0UL, 0UL);
    if (child < 0) {
        int err = errno;
        (void)close(p[0]);
        (void)close(p[1]);
        return say(why, cap, "clone", err);
    }
    if (child == 0)
        check_in_grandchild(restorer, image, p[1]);
    (void)close(p[1]);
    char text[400];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(p[0], text + got, sizeof(text) - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof(text) - 1)
            break;
    }
    (void)close(p[0]);
    text[got] = '\0';
    while (got && text[got - 1] == '\n')
        text[--got] = '\0';
    int st;
    while (waitpid(child, &st, __WCLONE) < 0)
        if (errno != EINTR)
            return say(why, cap, "waitpid", errno);
    if (lseek(image, 0, SEEK_SET) < 0)
        return say(why, cap, "lseek", errno);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    const char *line = strncmp(text, "mosrun: ", 8) == 0 ? text + 8 : text;
    if (line[0])
        return say(why, cap, line, 0);
    return say(why, cap, "the restorer refused the image", 0);
}
