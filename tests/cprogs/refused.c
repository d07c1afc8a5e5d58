/* refused.c - an unsupported system call at a moment the test chooses (built dynamic and static).
 *
 * Usage: refused CALL
 * Prints "ready" (flushed), waits for a line on stdin (the test moves the process
 * meanwhile), makes CALL, prints "CALL: ret=R errno=E" and "alive", exits 0.
 *   personality      personality(0xffffffff) through libc (the policy refuses it)
 *   raw-personality  the same with a syscall instruction of its own (not libc's text:
 *                    the preload shim's filter does not see it)
 *   prio-self        setpriority(PRIO_PROCESS, getpid(), 7): its own pid, allowed; then
 *                    ret = getpriority(PRIO_PROCESS, getpid()) * 100 + getpriority(.., 0)
 *   prio-parent      getpriority(PRIO_PROCESS, getppid()): another process, refused
 *   mlock            mlock of a page: pinned (runs at home; a process away comes home)
 *   thread           pthread_create and join (built with -pthread): pinned, the same
 * Exit status: 0, 2 bad usage, 3 stdin ended early. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static long raw_syscall1(long nr, long a0)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a0) : "rcx", "r11", "memory");
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

static void *thread_main(void *arg)
{
    return arg;
}

static long thread(void)
{
    pthread_t t;
    int r = pthread_create(&t, NULL, thread_main, NULL);
    if (r == 0)
        r = pthread_join(t, NULL);
    errno = r;
    return r ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 3;
    long ret;
    errno = 0;
    if (strcmp(argv[1], "personality") == 0)
        ret = personality(0xffffffff);
    else if (strcmp(argv[1], "raw-personality") == 0)
        ret = raw_syscall1(SYS_personality, 0xffffffffL);
    else if (strcmp(argv[1], "prio-self") == 0)
        ret = setpriority(PRIO_PROCESS, (id_t)getpid(), 7) < 0
                  ? -1
                  : getpriority(PRIO_PROCESS, (id_t)getpid()) * 100 + getpriority(PRIO_PROCESS, 0);
    else if (strcmp(argv[1], "prio-parent") == 0)
        ret = getpriority(PRIO_PROCESS, (id_t)getppid());
    else if (strcmp(argv[1], "mlock") == 0) {
        static char page[4096] __attribute__((aligned(4096)));
        ret = mlock(page, sizeof(page));
    } else if (strcmp(argv[1], "thread") == 0)
        ret = thread();
    else
        return 2;
    int e = ret == -1 ? errno : 0;
    printf("%s: ret=%ld errno=%d\nalive\n", argv[1], ret, e);
    return 0;
}
