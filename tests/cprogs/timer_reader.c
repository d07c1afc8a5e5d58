/* timer_reader.c - reads its stdin while a 1 ms interval timer fires.
 *
 * Usage: timer_reader
 * Says "reading" on stdout, then for each line of its stdin "got LINE"; at
 * its end "lines N alarms yes" (or "no": the SIGALRM handler never ran) and
 * exit status 0.  The handler (SA_RESTART) counts.  Built static, away from
 * home every read is on the supervisor's path and blocks at home, where the
 * process is stopped, continued and moved between lines. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms = 1;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGALRM, &sa, NULL) != 0)
        return 2;
    struct itimerval every_ms = {{0, 1000}, {0, 1000}};
    if (setitimer(ITIMER_REAL, &every_ms, NULL) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("reading\n");
    char line[256];
    long lines = 0;
    while (fgets(line, sizeof(line), stdin)) {
        lines++;
        printf("got %s", line);
    }
    if (ferror(stdin))
        return 3;
    printf("lines %ld alarms %s\n", lines, alarms ? "yes" : "no");
    return 0;
}
