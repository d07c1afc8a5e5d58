/* dirtytrack.c - which pages did a running process write?  The two ways this
 * kernel offers without soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off), timed
 * and checked against the truth, for live migration's pre-copy rounds.
 *
 *   dirtytrack METHOD MIB RATE ROUNDS ROUND_MS
 *
 * A child (the "program") fills MIB MiB of anonymous memory, then writes
 * RATE MiB/s of random pages (a bit in a shared bitmap set before each
 * write: the truth) while stamping CLOCK_MONOTONIC and keeping its longest
 * gap.  The parent (the "tracker", as mosix-ckpt would be) finds the pages it
 * wrote, every ROUND_MS for ROUNDS rounds, then stops it for a last round.
 * METHOD:
 *   uffd       the program's anonymous area is registered with a userfaultfd
 *              (UFFD_FEATURE_WP_ASYNC, UFFD_USER_MODE_ONLY) that the tracker
 *              takes with pidfd_getfd, as mosix-ckpt would take one it made
 *              the process create; the tracker write-protects the area, and
 *              each round is one PAGEMAP_SCAN ioctl on /proc/CHILD/pagemap
 *              (PAGE_IS_WRITTEN, PM_SCAN_WP_MATCHING: found and protected
 *              again at once) while the program runs.
 *   exclusive  no kernel feature: after a fork, a page the program writes is
 *              copied (copy-on-write) and is then mapped by it alone, which
 *              /proc/PID/pagemap says (bit 56, "exclusively mapped").  A round
 *              stops the program, reads its pagemap, and has it fork the next
 *              copy (the capture's frozen copy), the previous one killed.
 * Output, one line of key=value: arm_ms (tracking armed), scan_ms_max and
 * scan_ms_last (the last round's, with the program stopped), copy_ms (reading
 * all its memory through /proc/PID/mem: a full round), written, reported,
 * missed (written but never reported: must be 0), extra, last_pages, gap_ms
 * (the program's longest gap while tracked).
 * Exit status 0; 1 when missed > 0; 2 bad arguments; 3 a failed call. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Linux 6.7 uapi, absent from older headers. */
struct uffdio_api_ {
    uint64_t api, features, ioctls;
};
struct uffdio_range_ {
    uint64_t start, len;
};
struct uffdio_register_ {
    struct uffdio_range_ range;
    uint64_t mode, ioctls;
};
struct uffdio_writeprotect_ {
    struct uffdio_range_ range;
    uint64_t mode;
};
#define UFFDIO_ 0xAA
#define UFFDIO_API_ _IOWR(UFFDIO_, 0x3F, struct uffdio_api_)
#define UFFDIO_REGISTER_ _IOWR(UFFDIO_, 0x00, struct uffdio_register_)
#define UFFDIO_WRITEPROTECT_ _IOWR(UFFDIO_, 0x06, struct uffdio_writeprotect_)
#define UFFD_API_ 0xAA
#define UFFD_USER_MODE_ONLY_ 1
#define UFFD_FEATURE_WP_UNPOPULATED_ (1u << 13)
#define UFFD_FEATURE_WP_ASYNC_ (1u << 15)
#define UFFDIO_REGISTER_MODE_WP_ 2
#define UFFDIO_WRITEPROTECT_MODE_WP_ 1

struct page_region_ {
    uint64_t start, end, categories;
};
struct pm_scan_arg_ {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN_ _IOWR('f', 16, struct pm_scan_arg_)
#define PAGE_IS_WRITTEN_ (1u << 1)
#define PM_SCAN_WP_MATCHING_ (1u << 0)
#define PM_SCAN_CHECK_WPASYNC_ (1u << 1)
#define PM_EXCLUSIVE (1ull << 56)

#define PAGE 4096u
#define REGIONS 4096

struct shared {
    volatile int ready, go, stop_req, stopped_ack, quit;
    volatile int uffd;          /* the program's userfaultfd */
    volatile uint64_t base, len; /* its area */
    volatile uint64_t gap_ns;
    volatile pid_t copy;        /* exclusive: the current fork */
    uint8_t written[];          /* one byte per page: the truth */
};

static void die(const char *what)
{
    fprintf(stderr, "dirtytrack: %s: %s\n", what, strerror(errno));
    exit(3);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* ------------------------------------------------------------ the program */

static void new_copy(struct shared *sh)
{
    pid_t old = sh->copy, c = fork();
    if (c < 0)
        die("fork");
    if (c == 0) {
        for (;;)
            pause();
    }
    sh->copy = c;
    if (old > 0 && (kill(old, SIGKILL) < 0 || waitpid(old, NULL, 0) < 0))
        die("the old copy");
}

static void program(struct shared *sh, size_t len, double rate, int exclusive)
{
    uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < len; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(mem + i, &x, 8);
    }
    if (!exclusive) {
        int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY_);
        struct uffdio_api_ api = {UFFD_API_, UFFD_FEATURE_WP_ASYNC_ | UFFD_FEATURE_WP_UNPOPULATED_, 0};
        struct uffdio_register_ reg = {{(uint64_t)(uintptr_t)mem, len}, UFFDIO_REGISTER_MODE_WP_, 0};
        if (u < 0 || ioctl(u, UFFDIO_API_, &api) < 0 || ioctl(u, UFFDIO_REGISTER_, &reg) < 0)
            die("userfaultfd");
        sh->uffd = u;
    } else {
        new_copy(sh);
    }
    sh->base = (uint64_t)(uintptr_t)mem;
    sh->len = len;
    __atomic_store_n(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST))
        ;
    size_t pages = len / PAGE;
    double per_ns = rate * 256.0 / 1e9; /* pages per ns */
    uint64_t start = now_ns(), last = start, gap = 0, done = 0;
    while (!__atomic_load_n(&sh->quit, __ATOMIC_SEQ_CST)) {
        uint64_t t = now_ns();
        if (t - last > gap)
            gap = t - last;
        last = t;
        while (done < (uint64_t)((double)(t - start) * per_ns)) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t p = (size_t)(x % pages);
            __atomic_store_n(&sh->written[p], 1, __ATOMIC_SEQ_CST);
            memcpy(mem + p * PAGE + (x % (PAGE / 8)) * 8, &x, 8);
            done++;
        }
        if (__atomic_load_n(&sh->stop_req, __ATOMIC_SEQ_CST)) {
            sh->gap_ns = gap;
            __atomic_store_n(&sh->stop_req, 0, __ATOMIC_SEQ_CST);
            if (raise(SIGSTOP) != 0)
                die("raise");
            if (exclusive)
                new_copy(sh); /* first thing after the stop: nothing written in between */
            last = now_ns();
        }
    }
    sh->gap_ns = gap;
    if (sh->copy > 0 && (kill(sh->copy, SIGKILL) < 0 || waitpid(sh->copy, NULL, 0) < 0))
        die("the copy");
    exit(0);
}

/* ------------------------------------------------------------ the tracker */

struct tracker {
    struct shared *sh;
    pid_t child;
    int pmfd, uffd;
    uint8_t *reported;
    uint64_t *entries;
    size_t pages;
};

static void stop_child(struct tracker *t)
{
    int st;
    __atomic_store_n(&t->sh->stop_req, 1, __ATOMIC_SEQ_CST);
    if (waitpid(t->child, &st, WUNTRACED) < 0 || !WIFSTOPPED(st))
        die("waiting for the program to stop");
}

/* The pages written since the last scan, into t->reported; how many. */
static size_t scan_uffd(struct tracker *t)
{
    static struct page_region_ r[REGIONS];
    size_t n = 0;
    uint64_t from = t->sh->base, end = t->sh->base + t->sh->len;
    while (from < end) {
        struct pm_scan_arg_ a = {.size = sizeof(a),
                                 .flags = PM_SCAN_WP_MATCHING_ | PM_SCAN_CHECK_WPASYNC_,
                                 .start = from,
                                 .end = end,
                                 .vec = (uint64_t)(uintptr_t)r,
                                 .vec_len = REGIONS,
                                 .category_mask = PAGE_IS_WRITTEN_,
                                 .return_mask = PAGE_IS_WRITTEN_};
        int k = ioctl(t->pmfd, PAGEMAP_SCAN_, &a);
        if (k < 0)
            die("PAGEMAP_SCAN");
        for (int i = 0; i < k; i++)
            for (uint64_t p = r[i].start; p < r[i].end; p += PAGE, n++)
                t->reported[(p - t->sh->base) / PAGE] = 1;
        from = a.walk_end > from ? a.walk_end : end;
    }
    return n;
}

static size_t scan_exclusive(struct tracker *t)
{
    size_t n = 0;
    ssize_t want = (ssize_t)(t->pages * 8);
    if (pread(t->pmfd, t->entries, (size_t)want, (off_t)(t->sh->base / PAGE * 8)) != want)
        die("/proc/PID/pagemap");
    for (size_t i = 0; i < t->pages; i++)
        if (t->entries[i] & PM_EXCLUSIVE) {
            t->reported[i] = 1;
            n++;
        }
    return n;
}

static uint64_t read_all(struct tracker *t)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)t->child);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    size_t chunk = 4u << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf)
        die("malloc");
    uint64_t t0 = now_ns();
    for (uint64_t off = 0; off < t->sh->len; off += chunk)
        if (pread(fd, buf, chunk, (off_t)(t->sh->base + off)) != (ssize_t)chunk)
            die("/proc/PID/mem");
    uint64_t took = now_ns() - t0;
    free(buf);
    close(fd);
    return took;
}

int main(int argc, char **argv)
{
    if (argc != 6 || (strcmp(argv[1], "uffd") && strcmp(argv[1], "exclusive"))) {
        fprintf(stderr, "usage: dirtytrack uffd|exclusive MIB RATE_MIB_S ROUNDS ROUND_MS\n");
        return 2;
    }
    int exclusive = strcmp(argv[1], "exclusive") == 0;
    long mib = atol(argv[2]), rounds = atol(argv[4]), round_ms = atol(argv[5]);
    double rate = atof(argv[3]);
    if (mib < 1 || rate < 0 || rounds < 0 || round_ms < 1) {
        fprintf(stderr, "dirtytrack: MIB, ROUNDS, ROUND_MS must be positive\n");
        return 2;
    }
    size_t len = (size_t)mib << 20, pages = len / PAGE;
    struct shared *sh = mmap(NULL, sizeof(*sh) + pages, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap");
    sh->uffd = -1;
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0)
        program(sh, len, rate, exclusive);
    while (!__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST))
        usleep(1000);

    struct tracker t = {.sh = sh, .child = child, .pages = pages, .uffd = -1};
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)child);
    t.pmfd = open(path, O_RDONLY | O_CLOEXEC);
    t.reported = calloc(pages, 1);
    t.entries = malloc(pages * 8);
    if (t.pmfd < 0 || !t.reported || !t.entries)
        die("/proc/PID/pagemap");
    uint64_t arm = 0;
    if (!exclusive) {
        int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
        t.uffd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, sh->uffd, 0);
        if (t.uffd < 0)
            die("pidfd_getfd of the program's userfaultfd");
        uint64_t t0 = now_ns();
        struct uffdio_writeprotect_ wp = {{sh->base, sh->len}, UFFDIO_WRITEPROTECT_MODE_WP_};
        if (ioctl(t.uffd, UFFDIO_WRITEPROTECT_, &wp) < 0)
            die("UFFDIO_WRITEPROTECT");
        arm = now_ns() - t0;
    }
    uint64_t copy = read_all(&t);
    __atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);

    uint64_t scan_max = 0, scan_last = 0;
    size_t last_pages = 0;
    for (long r = 0; r <= rounds; r++) {
        int last = r == rounds;
        usleep((useconds_t)round_ms * 1000);
        if (last || exclusive)
            stop_child(&t);
        uint64_t t0 = now_ns();
        size_t n = exclusive ? scan_exclusive(&t) : scan_uffd(&t);
        uint64_t took = now_ns() - t0;
        if (took > scan_max)
            scan_max = took;
        if (last) {
            scan_last = took;
            last_pages = n;
        } else if (exclusive && kill(child, SIGCONT) < 0) {
            die("SIGCONT");
        }
    }
    size_t written = 0, reported = 0, missed = 0, extra = 0;
    for (size_t i = 0; i < pages; i++) {
        written += sh->written[i];
        reported += t.reported[i];
        missed += sh->written[i] && !t.reported[i];
        extra += !sh->written[i] && t.reported[i];
    }
    uint64_t gap = sh->gap_ns;
    __atomic_store_n(&sh->quit, 1, __ATOMIC_SEQ_CST);
    if (kill(child, SIGCONT) < 0 || waitpid(child, NULL, 0) < 0)
        die("the program");
    printf("method=%s mib=%ld rate=%g rounds=%ld arm_ms=%.2f scan_ms_max=%.2f scan_ms_last=%.2f "
           "copy_ms=%.1f written=%zu reported=%zu missed=%zu extra=%zu last_pages=%zu "
           "gap_ms=%.2f\n",
           argv[1], mib, rate, rounds, ms(arm), ms(scan_max), ms(scan_last), ms(copy), written,
           reported, missed, extra, last_pages, ms(gap));
    return missed ? 1 : 0;
}
