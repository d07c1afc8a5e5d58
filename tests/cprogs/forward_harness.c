/* forward_harness.c - forwarded system calls end to end, on a real kernel.
 *
 *   forward_harness run PARENT_DIR CHILD_DIR
 *     Forks a child that installs the generated forward filter with a
 *     user-notification listener; the parent (playing supervisor and deputy at
 *     once) takes the listener with pidfd_getfd and serves every notification:
 *     fwd_request (reading the child's memory) -> fwd_execute (here, in the
 *     parent: its cwd, its descriptors, its pid) -> fwd_apply (writing the
 *     child's memory) -> SECCOMP_IOCTL_NOTIF_SEND.  The parent works in
 *     PARENT_DIR, the child starts in CHILD_DIR: a relative path the child
 *     opens is the parent's.  The child runs a script of calls and prints one
 *     line per check ("NAME ok" or "NAME FAIL ..."), through forwarded writes.
 *     Exit status: the child's; 2 for a harness failure.
 *
 *   forward_harness fuzz
 *     Reads records (uint32_t length, request bytes; length bit 31: offer a reply
 *     buffer of only 88 bytes) from standard input and
 *     gives each to fwd_execute in a child whose seccomp filter refuses every
 *     system call the requests could reach (EPERM), so a request that passes the
 *     checks does no harm.  Checks each reply's shape; exit 0 when all are
 *     sound, 3 when a reply is malformed, the child's signal otherwise (a crash,
 *     or a sanitizer's report). */
#define _GNU_SOURCE
#include "forward.h"
#include "forward_table.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HIGH_FD 900 /* the parent's own descriptors, out of the child's way */

struct shared {
    _Atomic int listener; /* the child's listener number, 0 until published */
    _Atomic int ack;      /* the parent has it */
    pid_t parent;
};

static struct shared *sh;
static unsigned char req[FWD_PAYLOAD_MAX], rep[FWD_PAYLOAD_MAX];

static void die(const char *what)
{
    fprintf(stderr, "forward_harness: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void futex_wait(_Atomic int *addr, int value)
{
    if (syscall(SYS_futex, addr, FUTEX_WAIT, value, NULL, NULL, 0) < 0 && errno != EAGAIN &&
        errno != EINTR)
        die("futex wait");
}

static void futex_wake(_Atomic int *addr)
{
    if (syscall(SYS_futex, addr, FUTEX_WAKE, 1, NULL, NULL, 0) < 0)
        die("futex wake");
}

/* ------------------------------------------------------------- the child */

static int failures;

/* One line through a forwarded write. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) || write(1, line, (size_t)n) != n)
        _exit(4);
}

static void check(const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check(const char *name, int ok, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (ok) {
        say("%s ok\n", name);
    } else {
        failures++;
        say("%s FAIL %s (errno %d)\n", name, detail, errno);
    }
}

static void check_files(void)
{
    static const char text[] = "hello forwarded world\n";
    char buf[64] = {0};
    int fd = open("data.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    ssize_t w = fd >= 0 ? write(fd, text, sizeof(text) - 1) : -1;
    off_t at = fd >= 0 ? lseek(fd, 0, SEEK_SET) : -1;
    ssize_t r = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
    check("open_write_read",
          fd >= 0 && w == (ssize_t)sizeof(text) - 1 && at == 0 && r == w && !memcmp(buf, text, (size_t)r),
          "fd %d w %zd at %ld r %zd", fd, w, (long)at, r);

    int fd2 = openat(AT_FDCWD, "data2.txt", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    check("openat", fd2 >= 0 && write(fd2, "2", 1) == 1 && close(fd2) == 0, "fd %d", fd2);

    char three[4] = {0};
    ssize_t pw = pwrite(fd, "XYZ", 3, 6), pr = pread(fd, three, 3, 6);
    check("pread_pwrite", pw == 3 && pr == 3 && !memcmp(three, "XYZ", 3), "pw %zd pr %zd %s", pw,
          pr, three);

    char a[3] = "ab", b[2] = "c", c[6] = "defgh";
    struct iovec wv[3] = {{a, 2}, {b, 1}, {c, 5}};
    char r1[5] = {0}, r2[8] = {0};
    struct iovec rv[2] = {{r1, 4}, {r2, 7}};
    int vfd = open("vec.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    ssize_t vw = writev(vfd, wv, 3);
    off_t back = lseek(vfd, 0, SEEK_SET);
    ssize_t vr = readv(vfd, rv, 2);
    check("readv_writev",
          vw == 8 && back == 0 && vr == 8 && !memcmp(r1, "abcd", 4) && !memcmp(r2, "efgh", 4),
          "vw %zd vr %zd %.4s %.4s", vw, vr, r1, r2);
    ssize_t pvw = pwritev(vfd, wv, 1, 20);
    char pv[2] = {0};
    struct iovec pvv = {pv, 2};
    ssize_t pvr = preadv(vfd, &pvv, 1, 20);
    check("preadv_pwritev", pvw == 2 && pvr == 2 && !memcmp(pv, "ab", 2), "%zd %zd", pvw, pvr);

    struct stat st1, st2;
    struct statx sx;
    int s1 = fstat(fd, &st1), s2 = fstatat(AT_FDCWD, "data.txt", &st2, 0);
    int s3 = statx(AT_FDCWD, "data.txt", 0, STATX_INO | STATX_SIZE, &sx);
    check("stat", s1 == 0 && s2 == 0 && s3 == 0 && st1.st_ino == st2.st_ino && st1.st_ino == sx.stx_ino &&
                      st1.st_size == (off_t)sizeof(text) - 1 && sx.stx_size == (uint64_t)st1.st_size,
          "%d %d %d", s1, s2, s3);
    say("inode %llu\n", (unsigned long long)st1.st_ino);

    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 4};
    int l1 = fcntl(fd, F_OFD_SETLK, &lk);
    int other = open("data.txt", O_RDWR);
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    int l2 = fcntl(other, F_OFD_GETLK, &probe);
    check("fcntl_ofd_lock", l1 == 0 && l2 == 0 && probe.l_type == F_WRLCK && probe.l_len == 4 && probe.l_pid == -1,
          "%d %d type %d len %ld pid %d", l1, l2, probe.l_type, (long)probe.l_len, probe.l_pid);
    struct flock mine = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    int l3 = fcntl(other, F_SETLK, &mine), l4 = fcntl(other, F_GETLK, &q);
    check("fcntl_lock", l3 == 0 && l4 == 0 && q.l_type == F_UNLCK, "%d %d type %d", l3, l4, q.l_type);
    int fl = fcntl(other, F_GETFL);
    check("fcntl_val", fl >= 0 && (fl & O_ACCMODE) == O_RDWR, "%d", fl);

    int sl = symlink("data.txt", "link");
    char target[64] = {0};
    ssize_t rl = readlink("link", target, sizeof(target));
    check("readlink", sl == 0 && rl == 8 && !memcmp(target, "data.txt", 8), "%d %zd", sl, rl);

    DIR *dir = opendir(".");
    int seen = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)))
        seen += !strcmp(de->d_name, "data.txt") || !strcmp(de->d_name, "link");
    check("getdents64", dir && seen == 2 && closedir(dir) == 0, "seen %d", seen);

    int rn = rename("data2.txt", "data3.txt");
    int ul = unlink("data3.txt");
    int ac = access("data3.txt", F_OK);
    int ac_errno = errno;
    check("rename_unlink", rn == 0 && ul == 0 && ac == -1 && ac_errno == ENOENT, "%d %d %d", rn, ul, ac);

    /* A buffer that cannot be read fails before the call leaves; one that cannot be
     * written fails when the reply comes back. */
    char *volatile unmapped = (char *)8; /* the compiler must not see through it */
    errno = 0;
    ssize_t bad = write(fd, unmapped, 10);
    int bad_errno = errno;
    errno = 0;
    int badpath = open(unmapped, O_RDONLY);
    int badpath_errno = errno;
    struct stat *nowhere = (struct stat *)(unmapped + 8);
    errno = 0;
    int badstat = fstat(fd, nowhere);
    check("efault", bad == -1 && bad_errno == EFAULT && badpath == -1 && badpath_errno == EFAULT &&
                        badstat == -1 && errno == EFAULT,
          "%zd %d %d %d %d", bad, bad_errno, badpath, badpath_errno, badstat);

    size_t big = 3u << 20;
    char *mem = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check("mmap_anon", mem != MAP_FAILED, "mmap");
    if (mem != MAP_FAILED) {
        for (size_t i = 0; i < big; i++)
            mem[i] = (char)('a' + i % 26);
        int bfd = open("big.bin", O_CREAT | O_RDWR | O_TRUNC, 0644);
        ssize_t bw = write(bfd, mem, big);
        check("big_write_clamped", bw > 0 && (size_t)bw < big && (size_t)bw > (1u << 19),
              "wrote %zd", bw);
        say("big_write %zd\n", bw);
        memset(mem, 0, big);
        off_t z = lseek(bfd, 0, SEEK_SET);
        ssize_t br = read(bfd, mem, big);
        int same = br > (1 << 19) && br <= bw;
        for (ssize_t i = 0; same && i < br; i++)
            same = mem[i] == (char)('a' + i % 26);
        check("big_read_clamped", z == 0 && same, "read %zd", br);
        check("big_close", close(bfd) == 0 && munmap(mem, big) == 0, "close");
    }
    errno = 0;
    int unknown = ioctl(fd, 0x12345678, 0);
    check("ioctl_unknown", unknown == -1 && errno == ENOTTY, "%d", unknown);
    check("close", close(fd) == 0 && close(other) == 0 && close(vfd) == 0, "close");
}

static void check_pipes_and_sockets(void)
{
    int p[2];
    char buf[16] = {0};
    int pp = pipe2(p, O_CLOEXEC);
    ssize_t w = pp == 0 ? write(p[1], "pipe!", 5) : -1;
    struct pollfd pf = {p[0], POLLIN, 0};
    int pl = poll(&pf, 1, 1000);
    check("poll", pl == 1 && (pf.revents & POLLIN), "%d revents %d", pl, pf.revents);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    struct timeval tv = {1, 0};
    int sel = select(p[0] + 1, &rd, NULL, NULL, &tv);
    check("select", sel == 1 && FD_ISSET(p[0], &rd), "%d", sel);
    ssize_t r = read(p[0], buf, sizeof(buf));
    check("pipe", pp == 0 && w == 5 && r == 5 && !memcmp(buf, "pipe!", 5), "%d %zd %zd", pp, w, r);

    int sv[2];
    int sp = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    char h1[] = "hel", h2[] = "lo";
    struct iovec out[2] = {{h1, 3}, {h2, 2}};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof(control));
    struct msghdr m = {.msg_iov = out, .msg_iovlen = 2, .msg_control = control.space,
                       .msg_controllen = sizeof(control.space)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[1], sizeof(int));
    ssize_t sent = sp == 0 ? sendmsg(sv[0], &m, 0) : -1;

    char g1[2] = {0}, g2[8] = {0};
    struct iovec in[2] = {{g1, 2}, {g2, 8}};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
    } rcontrol;
    memset(&rcontrol, 0, sizeof(rcontrol));
    struct msghdr rm = {.msg_iov = in, .msg_iovlen = 2, .msg_control = rcontrol.space,
                        .msg_controllen = sizeof(rcontrol.space), .msg_flags = 0x7777};
    ssize_t got = sp == 0 ? recvmsg(sv[1], &rm, 0) : -1;
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rm);
    int passed = -1;
    if (rc && rc->cmsg_type == SCM_RIGHTS)
        memcpy(&passed, CMSG_DATA(rc), sizeof(int));
    check("sendmsg_recvmsg",
          sent == 5 && got == 5 && !memcmp(g1, "he", 2) && !memcmp(g2, "llo", 3) &&
              rm.msg_flags == 0 && rm.msg_controllen == CMSG_SPACE(sizeof(int)) && passed >= 0,
          "sent %zd got %zd flags %#x controllen %zu fd %d", sent, got, rm.msg_flags,
          (size_t)rm.msg_controllen, passed);
    /* The descriptor that came with the message is a home one: it writes into the pipe. */
    char via[8] = {0};
    ssize_t vw = passed >= 0 ? write(passed, "scm", 3) : -1;
    ssize_t vr = read(p[0], via, sizeof(via));
    check("scm_rights", vw == 3 && vr == 3 && !memcmp(via, "scm", 3), "%zd %zd", vw, vr);

    /* Two named datagram sockets: sendto names the receiver, recvfrom the sender. */
    int ds[2];
    struct sockaddr_un names[2];
    socklen_t nlen[2];
    int bound = 0;
    for (int i = 0; i < 2; i++) {
        ds[i] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        memset(&names[i], 0, sizeof(names[i]));
        names[i].sun_family = AF_UNIX;
        snprintf(names[i].sun_path + 1, sizeof(names[i].sun_path) - 1, "fwd-dgram-%d-%d",
                 (int)sh->parent, i);
        nlen[i] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                              strlen(names[i].sun_path + 1));
        bound += ds[i] >= 0 && bind(ds[i], (struct sockaddr *)&names[i], nlen[i]) == 0;
    }
    struct sockaddr_un from;
    memset(&from, 0x55, sizeof(from));
    socklen_t fromlen = sizeof(from);
    ssize_t st = sendto(ds[0], "dgram", 5, 0, (struct sockaddr *)&names[1], nlen[1]);
    char dg[16] = {0};
    ssize_t rf = recvfrom(ds[1], dg, sizeof(dg), 0, (struct sockaddr *)&from, &fromlen);
    check("sendto_recvfrom", bound == 2 && st == 5 && rf == 5 && !memcmp(dg, "dgram", 5) &&
                                 fromlen == nlen[0] && !memcmp(&from, &names[0], nlen[0]),
          "%d %zd %zd len %u", bound, st, rf, (unsigned)fromlen);

    int us = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "fwd-harness-%d", (int)sh->parent);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1));
    int bd = bind(us, (struct sockaddr *)&addr, alen);
    struct sockaddr_un back;
    memset(&back, 0, sizeof(back));
    socklen_t blen = sizeof(back);
    int gs = getsockname(us, (struct sockaddr *)&back, &blen);
    check("getsockname", us >= 0 && bd == 0 && gs == 0 && blen == alen && !memcmp(&back, &addr, alen),
          "%d %d %d len %u", us, bd, gs, (unsigned)blen);
    int one = 1, val = 0;
    socklen_t vlen = sizeof(val);
    int so = setsockopt(us, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
    int go = getsockopt(us, SOL_SOCKET, SO_PASSCRED, &val, &vlen);
    check("sockopt", so == 0 && go == 0 && val == 1 && vlen == sizeof(int), "%d %d %d", so, go, val);
    int closed = close(p[0]) | close(p[1]) | close(sv[0]) | close(sv[1]) | close(ds[0]) |
                 close(ds[1]) | close(us) | (passed >= 0 ? close(passed) : 0);
    check("close_sockets", closed == 0, "close");
}

static void check_terminal(void)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    int ok = master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0;
    char name[64] = {0};
    ok = ok && ptsname_r(master, name, sizeof(name)) == 0;
    int slave = ok ? open(name, O_RDWR | O_NOCTTY) : -1;
    check("openpty", ok && slave >= 0 && !strncmp(name, "/dev/pts/", 9), "%d %s", master, name);
    struct winsize set = {.ws_row = 33, .ws_col = 77}, got;
    memset(&got, 0, sizeof(got));
    int s = ioctl(slave, TIOCSWINSZ, &set), g = ioctl(master, TIOCGWINSZ, &got);
    check("tiocgwinsz", s == 0 && g == 0 && got.ws_row == 33 && got.ws_col == 77, "%d %d %dx%d", s, g,
          got.ws_row, got.ws_col);
    struct termios t;
    int ga = tcgetattr(slave, &t);
    t.c_lflag &= ~(tcflag_t)ECHO;
    int sa = tcsetattr(slave, TCSANOW, &t);
    struct termios t2;
    int ga2 = tcgetattr(slave, &t2);
    check("termios", ga == 0 && sa == 0 && ga2 == 0 && !(t2.c_lflag & ECHO), "%d %d %d", ga, sa, ga2);
    int avail = -1;
    ssize_t w = write(master, "x\n", 2);
    struct pollfd pf = {slave, POLLIN, 0};
    int pl = poll(&pf, 1, 1000);
    int fr = ioctl(slave, FIONREAD, &avail);
    check("fionread", w == 2 && pl == 1 && fr == 0 && avail == 2, "%zd %d %d avail %d", w, pl, fr, avail);
    check("close_pty", close(slave) == 0 && close(master) == 0, "close");
}

static void check_identity(const char *parent_dir)
{
    check("getpid", getpid() == sh->parent, "%d vs %d", (int)getpid(), (int)sh->parent);
    check("gettid", gettid() == sh->parent, "%d", (int)gettid());
    char cwd[4096] = {0};
    char *c = getcwd(cwd, sizeof(cwd));
    check("getcwd", c && !strcmp(cwd, parent_dir), "%s", cwd);
    mode_t old = umask(027);
    mode_t now = umask(old);
    check("umask", now == 027, "%o then %o", (unsigned)old, (unsigned)now);
    struct utsname u;
    check("uname", uname(&u) == 0 && !strcmp(u.sysname, "Linux"), "%s", u.sysname);
    struct timespec ts = {0, 0};
    long cg = syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts); /* past the vDSO */
    check("clock_gettime", cg == 0 && ts.tv_sec > 1600000000, "%ld %ld", cg, (long)ts.tv_sec);
    check("getppid", getppid() > 0, "%d", (int)getppid());
    int md = mkdir("sub", 0755);
    int cd = chdir("sub");
    char *c2 = getcwd(cwd, sizeof(cwd));
    size_t pl = strlen(parent_dir);
    check("chdir", md == 0 && cd == 0 && c2 && !strncmp(cwd, parent_dir, pl) && !strcmp(cwd + pl, "/sub"),
          "%s", cwd);
    check("chdir_back", chdir("..") == 0, "..");
}

static int child_main(const char *parent_dir, const char *child_dir)
{
    if (chdir(child_dir) < 0)
        die("chdir child");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("PR_SET_NO_NEW_PRIVS");
    struct sock_fprog prog = {(unsigned short)LEN(mosix_forward_filter),
                              (struct sock_filter *)mosix_forward_filter};
    long listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
                            &prog);
    if (listener < 0)
        die("seccomp");
    /* Only local calls until the parent holds the listener (futex, the page). */
    atomic_store(&sh->listener, (int)listener);
    futex_wake(&sh->listener);
    while (!atomic_load(&sh->ack))
        futex_wait(&sh->ack, 0);
    say("child started\n");
    check_identity(parent_dir);
    check_files();
    check_pipes_and_sockets();
    check_terminal();
    say("failures %d\n", failures);
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------ the parent */

static long served, errors;

static void answer(int listener, __u64 id, long ret)
{
    struct seccomp_notif_resp resp;
    memset(&resp, 0, sizeof(resp));
    resp.id = id;
    if (ret < 0 && ret >= -4095)
        resp.error = (__s32)ret;
    else
        resp.val = ret;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
        die("SECCOMP_IOCTL_NOTIF_SEND");
}

static void serve(int listener)
{
    struct seccomp_notif n;
    memset(&n, 0, sizeof(n));
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &n) < 0) {
        if (errno == EINTR || errno == ENOENT)
            return;
        die("SECCOMP_IOCTL_NOTIF_RECV");
    }
    uint64_t args[6];
    for (int i = 0; i < 6; i++)
        args[i] = n.data.args[i];
    long nr = n.data.nr, ret;
    served++;
    switch (fwd_placement(nr, args)) {
    case FWD_HOME:
    case FWD_TIME:
    case FWD_UNFORWARDABLE: {
        long len = fwd_request((pid_t)n.pid, nr, args, req, sizeof(req));
        if (len < 0) {
            ret = len;
            break;
        }
        size_t rlen = fwd_execute(req, (size_t)len, rep, sizeof(rep));
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &n.id) < 0)
            return; /* the child is gone or was interrupted */
        ret = fwd_apply((pid_t)n.pid, nr, args, rep, rlen);
        if (ret == -EPROTO) {
            fprintf(stderr, "forward_harness: reply of call %ld does not match\n", nr);
            errors++;
        }
        break;
    }
    case FWD_LOCAL:
        fprintf(stderr, "forward_harness: local call %ld was notified\n", nr);
        errors++;
        ret = -ENOSYS;
        break;
    default:
        ret = -ENOSYS;
    }
    answer(listener, n.id, ret);
}

static int run(const char *parent_dir, const char *child_dir)
{
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap");
    sh->parent = getpid();
    if (fflush(stdout) != 0)
        die("fflush");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0)
        _exit(child_main(parent_dir, child_dir));
    if (chdir(parent_dir) < 0)
        die("chdir parent");
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    if (pidfd < 0)
        die("pidfd_open");
    while (!atomic_load(&sh->listener))
        futex_wait(&sh->listener, 0);
    int taken = (int)syscall(SYS_pidfd_getfd, pidfd, atomic_load(&sh->listener), 0);
    if (taken < 0)
        die("pidfd_getfd");
    /* The child's calls run here: keep our own descriptors out of their way. */
    int listener = fcntl(taken, F_DUPFD_CLOEXEC, HIGH_FD);
    if (listener < 0 || close(taken) < 0 || close(pidfd) < 0)
        die("moving the listener");
    atomic_store(&sh->ack, 1);
    futex_wake(&sh->ack);
    for (;;) {
        struct pollfd p = {listener, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (p.revents & POLLIN)
            serve(listener);
        else if (p.revents & (POLLHUP | POLLERR))
            break;
    }
    int status;
    if (waitpid(child, &status, 0) < 0)
        die("waitpid");
    fprintf(stderr, "forward_harness: served %ld calls, %ld errors, parent %d\n", served, errors,
            (int)sh->parent);
    if (errors)
        return 2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* -------------------------------------------------------------- the fuzzer */

/* Every call a request could reach fails with EPERM; what the process itself needs
 * (memory, its end, a sanitizer's report on stderr) runs. */
static void refuse_everything(void)
{
    static const int allowed[] = {SYS_mmap,     SYS_munmap,       SYS_mprotect,     SYS_brk,
                                  SYS_madvise,  SYS_exit,         SYS_exit_group,   SYS_rt_sigreturn,
                                  SYS_futex,    SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_sigaltstack};
    struct sock_filter f[64];
    size_t n = 0;
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0); /* nr */
    /* write(2, ...): sanitizers report there */
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 3);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 16); /* args[0] low */
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 2, LEN(allowed) + 1, LEN(allowed) + 2);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0);
    for (size_t i = 0; i < LEN(allowed); i++)
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed[i],
                                              (unsigned char)(LEN(allowed) - i), 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {(unsigned short)n, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        die("seccomp");
}

static int fuzz(void)
{
    size_t cap = 1u << 16, len = 0;
    unsigned char *in = malloc(cap);
    for (;;) {
        if (!in)
            die("malloc");
        ssize_t r = read(0, in + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read");
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap)
            in = realloc(in, cap *= 2);
    }
    long *results = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (results == MAP_FAILED)
        die("mmap");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        refuse_everything();
        size_t off = 0;
        while (len - off >= 4) {
            uint32_t n;
            memcpy(&n, in + off, 4);
            off += 4;
            int small = (n & 0x80000000u) != 0; /* a reply buffer too small for outputs */
            n &= 0x7fffffffu;
            if (n > len - off)
                n = (uint32_t)(len - off);
            /* a copy of exactly n bytes: reading past it is the sanitizer's to catch */
            unsigned char *one = malloc(n ? n : 1);
            if (!one)
                _exit(5);
            memcpy(one, in + off, n);
            off += n;
            size_t cap_out = small ? sizeof(struct fwd_reply) + 64 : sizeof(rep);
            size_t out = fwd_execute(one, n, rep, cap_out);
            struct fwd_reply r;
            memcpy(&r, rep, sizeof(r));
            if (out < sizeof(r) || out > cap_out || r.magic != FWD_REPLY_MAGIC ||
                out != sizeof(r) + r.data_len || (r.ret < 0 && r.nouts) || r.ret < -4095)
                _exit(3);
            results[0]++;
            results[r.ret == -EINVAL ? 2 : r.ret == -ENOBUFS ? 3 : 1]++;
            free(one);
        }
        _exit(0);
    }
    free(in);
    int status;
    if (waitpid(child, &status, 0) < 0)
        die("waitpid");
    printf("requests %ld invalid %ld nobufs %ld other %ld\n", results[0], results[2], results[3],
           results[1]);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "run"))
        return run(argv[2], argv[3]);
    if (argc == 2 && !strcmp(argv[1], "fuzz"))
        return fuzz();
    fprintf(stderr, "usage: forward_harness run PARENT_DIR CHILD_DIR | forward_harness fuzz\n");
    return 2;
}
