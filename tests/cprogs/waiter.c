/* waiter.c - a parent that waits for each of its two children by pid.
 *
 * Usage: waiter none|restart|interrupt
 *   none       no SIGCHLD handler (its default: ignored)
 *   restart    a SIGCHLD handler with SA_RESTART
 *   interrupt  a SIGCHLD handler without SA_RESTART
 * Forks two children, which wait until a signal ends them, says "children A B"
 * (their pids), then waits for child 0 and then for child 1 by pid, saying
 * "waited K signal S" for each, or "wait K: ERROR" when a wait fails (then it
 * waits again).  At the end it says "handled N" (SIGCHLD handler runs) and
 * exits 0; 1 when a call fails otherwise.  Natively, the second child's end
 * during the first wait interrupts it only with a handler without SA_RESTART. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_chld(int sig)
{
    (void)sig;
    handled++;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 1;
    if (strcmp(argv[1], "none") != 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_chld;
        sa.sa_flags = strcmp(argv[1], "restart") == 0 ? SA_RESTART : 0;
        if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGCHLD, &sa, NULL) != 0)
            return 1;
    }
    pid_t child[2];
    for (int k = 0; k < 2; k++) {
        child[k] = fork();
        if (child[k] < 0)
            return 1;
        if (child[k] == 0) {
            for (;;)
                pause();
        }
    }
    printf("children %d %d\n", (int)child[0], (int)child[1]);
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        int st;
        pid_t r;
        while ((r = waitpid(child[k], &st, 0)) < 0) {
            printf("wait %d: %s\n", k, strerror(errno));
            fflush(stdout);
            if (errno != EINTR)
                return 1;
        }
        printf("waited %d signal %d\n", k, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        fflush(stdout);
    }
    printf("handled %d\n", (int)handled);
    return 0;
}
