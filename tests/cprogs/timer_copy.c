/* timer_copy.c - fastpath_copy.c's copy with a 1 ms interval timer firing.
 *
 * Usage: timer_copy restart|interrupt IN OUT
 * Copies IN to OUT in small reads and writes of varying sizes, round after
 * round (IN is read again from its start at its end), until its stdin ends;
 * then "copied N" on stdout.  Meanwhile ITIMER_REAL fires every millisecond;
 * its SIGALRM handler counts, installed with SA_RESTART ("restart") or without
 * ("interrupt": a call that fails with EINTR is made again, as a careful
 * program does; natively, calls on a regular file never fail so, but away
 * from home on the supervisor's path they may: the signal ends the copy's
 * wait for home's answer, and only the call made again gets that answer).
 * Away from home (static: every call on the supervisor's path), a read done
 * twice or lost, or a write lost or done twice, shows in OUT. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static ssize_t again_read(int fd, char *buf, size_t size)
{
    ssize_t n;
    while ((n = read(fd, buf, size)) < 0 && errno == EINTR)
        ;
    return n;
}

static ssize_t again_write(int fd, const char *buf, size_t size)
{
    ssize_t n;
    while ((n = write(fd, buf, size)) < 0 && errno == EINTR)
        ;
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = strcmp(argv[1], "restart") == 0 ? SA_RESTART : 0;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGALRM, &sa, NULL) != 0)
        return 2;
    int in = open(argv[2], O_RDONLY);
    int out = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
        return 3;
    struct itimerval every_ms = {{0, 1000}, {0, 1000}};
    if (setitimer(ITIMER_REAL, &every_ms, NULL) != 0)
        return 2;
    long copied = 0, calls = 0;
    size_t size = 1;
    for (;;) {
        char buf[128];
        ssize_t n = again_read(in, buf, size);
        if (n < 0)
            return 4;
        if (n == 0) { /* the end of the input: again from its start */
            off_t at;
            while ((at = lseek(in, 0, SEEK_SET)) < 0 && errno == EINTR)
                ;
            if (at != 0)
                return 5;
            continue;
        }
        if (again_write(out, buf, (size_t)n) != n)
            return 6;
        copied += n;
        size = size % 97 + 1;
        if (++calls % 64 == 0) { /* the end of stdin: stop */
            struct pollfd p = {STDIN_FILENO, POLLIN, 0};
            int r;
            while ((r = poll(&p, 1, 0)) < 0 && errno == EINTR)
                ;
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
