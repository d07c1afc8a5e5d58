/* trigger_prog.c - MOSIX's checkpoint call from a test program (built dynamic and -static).
 *
 *   trigger_prog checkpoint            mosix_checkpoint(): "checkpoint ret=R errno=E"
 *   trigger_prog file NAME             mosix_checkpoint_file(NAME): "file ret=R errno=E"
 *   trigger_prog limit N / interval N  mosix_checkpoint_limit / _interval
 *   trigger_prog raw OP ARG            syscall(MOSIX_CHECKPOINT_SYSCALL, OP, ARG)
 *   trigger_prog badptr                op 2 with an unmapped pointer
 *   trigger_prog fopen PATH TEXT       fopen(PATH, "w"), fputs(TEXT), fclose
 *   trigger_prog open PATH TEXT        open(PATH, O_WRONLY), write(TEXT), close
 *   trigger_prog read PATH             open(PATH, O_RDONLY): "read [TEXT]"
 *   trigger_prog fork-wait             a child calls mosix_checkpoint(); the parent
 *                                      reads a line from stdin, then makes an
 *                                      unsupported call (personality, raw)
 *   trigger_prog restartable           SA_RESTART handler for SIGUSR1, then checkpoint
 *   trigger_prog series NAME N         mosix_checkpoint_file(NAME), then N checkpoints
 *
 * Every line of output is "WHAT ret=R errno=E" (E 0 on success); "pid N" first
 * where the test needs the pid. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mosix_checkpoint.h"
#include "raw_syscall.h"

static void report(const char *what, long ret)
{
    printf("%s ret=%ld errno=%d\n", what, ret, ret < 0 ? errno : 0);
    if (fflush(stdout) != 0)
        exit(3);
}

static void say_pid(void)
{
    printf("pid %d\n", (int)getpid());
    if (fflush(stdout) != 0)
        exit(3);
}

static long by_stdio(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    if (fputs(text, f) < 0)
        return -1;
    return fclose(f);
}

static long by_fd(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        return -1;
    return close(fd);
}

static void read_back(const char *path)
{
    char buf[4200];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report("read", -1);
        return;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int saved = errno;
    if (close(fd) != 0 || n < 0) {
        errno = n < 0 ? saved : errno;
        report("read", -1);
        return;
    }
    buf[n] = '\0';
    printf("read [%s]\n", buf);
    if (fflush(stdout) != 0)
        exit(3);
}

static void on_usr1(int sig)
{
    (void)sig;
}

static int restartable(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
        return 2;
    say_pid();
    report("checkpoint", mosix_checkpoint());
    return 0;
}

static int fork_wait(void)
{
    say_pid();
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        report("child-checkpoint", mosix_checkpoint());
        _exit(0);
    }
    char line[16];
    if (fgets(line, sizeof(line), stdin) == NULL)
        return 2;
    long r = mosix_raw1(SYS_personality, 0xffffffffUL); /* not libc's: the guard answers */
    if (r < 0) {
        errno = (int)-r;
        r = -1;
    }
    report("unsupported", r);
    int status;
    if (waitpid(child, &status, 0) != child)
        return 2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *cmd = argv[1];
    if (strcmp(cmd, "checkpoint") == 0)
        report("checkpoint", mosix_checkpoint());
    else if (strcmp(cmd, "file") == 0 && argc == 3)
        report("file", mosix_checkpoint_file(argv[2]));
    else if (strcmp(cmd, "limit") == 0 && argc == 3)
        report("limit", mosix_checkpoint_limit(atoi(argv[2])));
    else if (strcmp(cmd, "interval") == 0 && argc == 3)
        report("interval", mosix_checkpoint_interval(atoi(argv[2])));
    else if (strcmp(cmd, "raw") == 0 && argc == 4)
        report("raw", syscall(MOSIX_CHECKPOINT_SYSCALL, strtol(argv[2], NULL, 0),
                              strtol(argv[3], NULL, 0)));
    else if (strcmp(cmd, "badptr") == 0)
        report("badptr", syscall(MOSIX_CHECKPOINT_SYSCALL, (long)MOSIX_CHECKPOINT_OP_SET_FILE, 8L));
    else if (strcmp(cmd, "fopen") == 0 && argc == 4)
        report("fopen", by_stdio(argv[2], argv[3]));
    else if (strcmp(cmd, "open") == 0 && argc == 4)
        report("open", by_fd(argv[2], argv[3]));
    else if (strcmp(cmd, "read") == 0 && argc == 3)
        read_back(argv[2]);
    else if (strcmp(cmd, "series") == 0 && argc == 4) {
        report("file", mosix_checkpoint_file(argv[2]));
        for (int i = atoi(argv[3]); i > 0; i--)
            report("checkpoint", mosix_checkpoint());
    } else if (strcmp(cmd, "fork-wait") == 0)
        return fork_wait();
    else if (strcmp(cmd, "restartable") == 0)
        return restartable();
    else
        return 2;
    return 0;
}
