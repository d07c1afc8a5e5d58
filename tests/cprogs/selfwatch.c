/* selfwatch.c - a program that watches itself through the kernel, as profilers,
 * benchmark libraries and user-space pagers do.
 *
 * Usage: selfwatch
 * Opens a software perf counter of its own task clock (perf_event_open, pid 0)
 * and a userfaultfd that serves the missing pages of one of its own areas (a
 * handler thread fills them); prints "perf ok" and "uffd ok" when both work,
 * then "holding" and waits for a line on stdin with both descriptors open;
 * closes them, prints "released", and waits for another line before it ends. */
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096

static int uffd = -1;

static void *serve_faults(void *arg)
{
    static char page[PAGE];
    (void)arg;
    memset(page, 'x', sizeof(page));
    struct pollfd p = {uffd, POLLIN, 0};
    if (poll(&p, 1, -1) != 1)
        return (void *)1;
    struct uffd_msg msg;
    if (read(uffd, &msg, sizeof(msg)) != (ssize_t)sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT)
        return (void *)1;
    struct uffdio_copy copy = {
        .dst = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
        .src = (uint64_t)(uintptr_t)page,
        .len = PAGE,
    };
    if (ioctl(uffd, UFFDIO_COPY, &copy) != 0)
        return (void *)1;
    return NULL;
}

static int wait_line(void)
{
    char line[16];
    return fgets(line, sizeof(line), stdin) != NULL;
}

int main(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    int perf = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (perf < 0) {
        perror("perf_event_open");
        return 2;
    }
    volatile unsigned long sink = 0;
    for (unsigned long i = 0; i < 20000000UL; i++)
        sink += i;
    uint64_t ns = 0;
    if (read(perf, &ns, sizeof(ns)) != (ssize_t)sizeof(ns) || ns == 0) {
        fprintf(stderr, "perf counter: nothing counted\n");
        return 3;
    }
    printf("perf ok\n");

    uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    if (uffd < 0) {
        perror("userfaultfd");
        return 4;
    }
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        perror("UFFDIO_API");
        return 4;
    }
    char *area = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return 4;
    struct uffdio_register reg = {
        .range = {.start = (uint64_t)(uintptr_t)area, .len = PAGE},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
        perror("UFFDIO_REGISTER");
        return 4;
    }
    pthread_t server;
    if (pthread_create(&server, NULL, serve_faults, NULL) != 0)
        return 4;
    char first = area[100]; /* a missing page: the handler thread fills it */
    void *served;
    if (pthread_join(server, &served) != 0 || served != NULL || first != 'x') {
        fprintf(stderr, "userfaultfd: the page was not served\n");
        return 5;
    }
    printf("uffd ok\nholding\n");
    fflush(stdout);
    if (!wait_line())
        return 6;
    if (close(perf) != 0 || close(uffd) != 0)
        return 7;
    printf("released\n");
    fflush(stdout);
    return wait_line() ? 0 : 6;
}
