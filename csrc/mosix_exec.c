/* mosix_exec.c - start a program under the MOSIX discipline, in place.
 *
 * Usage: mosix-exec PATH ARGV0 [ARGS...]
 * (The discipline issue adds the filter; for now it only execs.)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "mosix-exec: usage: mosix-exec PATH ARGV0 [ARGS...]\n");
        return 125;
    }
    execve(argv[1], argv + 2, environ);
    fprintf(stderr, "mosix-exec: %s: %s\n", argv[1], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
