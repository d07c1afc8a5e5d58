/* Close-on-exec flags across a migration and back: opens A with O_CLOEXEC
 * ("ready"), and at each line on stdin moves on:
 *   1st line: closes A, opens B with O_CLOEXEC ("swapped");
 * then, once file GO exists (polled: no call blocks, so it can come home at
 * any time), writes to B, checks B still has FD_CLOEXEC and A's number is
 * closed, prints "ok" and exits 0 (3: a check failed). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int wait_line(void)
{
    char line[64];
    return fgets(line, sizeof line, stdin) != NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int a = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (a < 0)
        return 3;
    printf("ready\n");
    fflush(stdout);
    if (!wait_line() || close(a) < 0)
        return 3;
    int b = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (b < 0)
        return 3;
    printf("swapped\n");
    fflush(stdout);
    while (access(argv[3], F_OK) != 0)
        usleep(10000);
    if (write(b, "B\n", 2) != 2)
        return 3;
    int flags = fcntl(b, F_GETFD);
    if (flags < 0 || !(flags & FD_CLOEXEC)) {
        printf("B lost FD_CLOEXEC\n");
        return 3;
    }
    if (a != b && (fcntl(a, F_GETFD) >= 0 || errno != EBADF)) {
        printf("A is open again\n");
        return 3;
    }
    printf("ok\n");
    return 0;
}
