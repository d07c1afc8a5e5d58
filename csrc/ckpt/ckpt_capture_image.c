/* ckpt_capture_image.c - writing to the output descriptor (the file itself:
 * ckpt_capture_output.c; the image's records: ckpt_capture_stream.c). */
#include "ckpt_capture_common.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

/* ------------------------------------------------------------ writing */

static int wait_writable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    for (;;) {
        int r = poll(&p, 1, -1);
        if (r > 0)
            return 0;
        if (r < 0 && errno == EINTR && !ck_interrupted)
            continue;
        return -1;
    }
}

int ck_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR && !ck_interrupted)
            continue;
        if (w < 0 && errno == EAGAIN && wait_writable(fd) == 0)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            ck_set_why_errno("writing the image");
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}
