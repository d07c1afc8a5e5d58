/* forker.c - creating processes from wherever it runs, for migration tests.
 *
 * Says "ready pid P" and then obeys one line of stdin at a time:
 *   fork   fork; the child says "child ppid Q" and exits 3; the parent
 *          waits and says "fork: child status 3 ppid-ok" (Q was its pid)
 *   vfork  vfork; the child exits 4 at once; "vfork: child status 4"
 *   exec   execute /bin/sh, which says "exec pid P" and exits 6 (the pid
 *          must be unchanged)
 * After each command (but exec) it says "done CMD pid P"; at the end of
 * stdin it exits 0.  Other statuses: 1 a call failed, 2 unknown command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int status_of(pid_t child)
{
    int st;
    if (waitpid(child, &st, 0) != child) {
        perror("waitpid");
        exit(1);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void)
{
    char line[64];
    printf("ready pid %d\n", (int)getpid());
    fflush(stdout);
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = '\0';
        pid_t me = getpid();
        if (strcmp(line, "fork") == 0) {
            pid_t child = fork();
            if (child < 0) {
                perror("fork");
                return 1;
            }
            if (child == 0) {
                printf("child ppid %d\n", (int)getppid());
                fflush(stdout);
                _exit(getppid() == me ? 3 : 5);
            }
            printf("fork: child status %d\n", status_of(child));
        } else if (strcmp(line, "vfork") == 0) {
            pid_t child = vfork();
            if (child < 0) {
                perror("vfork");
                return 1;
            }
            if (child == 0)
                _exit(4);
            printf("vfork: child status %d\n", status_of(child));
        } else if (strcmp(line, "exec") == 0) {
            execl("/bin/sh", "sh", "-c", "echo exec pid $$; exit 6", (char *)NULL);
            perror("execl");
            return 1;
        } else {
            return 2;
        }
        printf("done %s pid %d\n", line, (int)getpid());
        fflush(stdout);
    }
    return 0;
}
