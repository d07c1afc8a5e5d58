/* fastpath_signal.c - a signal for a call blocked at home: reads its stdin
 * (which nobody writes) with a SIGUSR1 handler installed without SA_RESTART;
 * prints whether the read ended with EINTR and whether the handler had run by
 * then, and the preload shim's fast-path counter. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern unsigned long mosix_shim_fast_calls __attribute__((weak));

static volatile sig_atomic_t caught;

static void on_usr1(int sig)
{
    (void)sig;
    caught = 1;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
        return 2;
    char c;
    ssize_t r = read(STDIN_FILENO, &c, 1);
    int err = errno;
    unsigned long fast = &mosix_shim_fast_calls ? mosix_shim_fast_calls : 0;
    printf("read %zd %s caught %d fast %lu\n", r, r < 0 ? strerror(err) : "-", (int)caught,
           fast);
    return 0;
}
