/* fastpath_copy.c - copies a file (its first argument) to another (its second)
 * in small reads and writes of varying sizes, round after round (the input is
 * read again from its start at its end), until its stdin ends; then "copied N"
 * on stdout.  Every read and write is a separate forwarded call when the
 * process runs away from home: a read done twice or lost (a short or empty
 * read), or a write lost or done twice, shows as a difference between the
 * output and the input repeated. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int in = open(argv[1], O_RDONLY);
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
        return 3;
    long copied = 0, calls = 0;
    size_t size = 1;
    for (;;) {
        char buf[128];
        ssize_t n = read(in, buf, size);
        if (n < 0)
            return 4;
        if (n == 0) { /* the end of the input: again from its start */
            if (lseek(in, 0, SEEK_SET) != 0)
                return 5;
            continue;
        }
        if (write(out, buf, (size_t)n) != n)
            return 6;
        copied += n;
        size = size % 97 + 1;
        if (++calls % 64 == 0) { /* the end of stdin: stop */
            struct pollfd p = {STDIN_FILENO, POLLIN, 0};
            int r = poll(&p, 1, 0);
            if (r < 0)
                return 7;
            if (r > 0)
                break;
        }
    }
    if (close(out) != 0)
        return 8;
    printf("copied %ld\n", copied);
    return 0;
}
