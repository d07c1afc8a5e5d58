/* remote_discipline.c - the guard's answers, for a copy on a remote node (remote_discipline.h).
 *
 * The same outcomes as mosix_guard.c, from the same table (mosix_classify):
 *   unsupported  -u: message at home and SIGKILL, -e: ENOSYS, -w: message and ENOSYS
 *   self-only    the process itself (its home pid): the call done here for the copy
 *   mmap fix-up  (read-only MAP_SHARED the shim did not make private) ENOSYS, -w warns
 *   pinned       (runs natively at home, keeps the process there) the process comes
 *                home first and the call is made there
 * The mode is the copy's own (the last -e/-u/-w word of its MOSIX_INHERIT, which the
 * restored process keeps in its environment), else mosix-remote's -m. */
#include "remote_discipline.h"

#include "forward.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_table.h"

#define CAP_SYS_NICE 23

/* The process's effective capabilities include ``cap``. */
static int has_capability(pid_t pid, int cap)
{
    char status[4096];
    long len = mosix_read_proc((int)pid, "status", status, sizeof(status) - 1);
    if (len < 0)
        return 0;
    status[len] = '\0';
    const char *at = strstr(status, "\nCapEff:");
    unsigned long long caps = 0;
    return at && sscanf(at + 8, "%llx", &caps) == 1 && (caps >> cap) & 1;
}

/* getpriority/setpriority(PRIO_PROCESS, its own pid, ...): done on the copy, with the
 * kernel's own rule for lowering the nice value (RLIMIT_NICE or CAP_SYS_NICE). */
static long priority_of_copy(const struct seccomp_data *sd, pid_t pid)
{
    if (sd->nr == SYS_getpriority) {
        long r = syscall(SYS_getpriority, PRIO_PROCESS, (id_t)pid);
        return r < 0 ? -errno : r;
    }
    int nice = (int)sd->args[2];
    nice = nice < -20 ? -20 : nice > 19 ? 19 : nice;
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)pid);
    if (now == -1 && errno != 0)
        return -errno;
    struct rlimit lim;
    if (prlimit(pid, RLIMIT_NICE, NULL, &lim) < 0)
        return -errno;
    if (nice < now && (rlim_t)(20 - nice) > lim.rlim_cur && !has_capability(pid, CAP_SYS_NICE))
        return -EACCES;
    return setpriority(PRIO_PROCESS, (id_t)pid, nice) < 0 ? -errno : 0;
}

enum rd_action rd_decide(const struct seccomp_data *sd, pid_t pid, pid_t home_pid,
                         enum mosix_mode dflt, long *result)
{
    unsigned c = mosix_classify(sd);
    enum mosix_mode mode;
    *result = -ENOSYS;
    switch (MOSIX_OUTCOME(c)) {
    case MOSIX_OUTCOME_PIN:
        return RD_HOME;
    case MOSIX_OUTCOME_SELF_ONLY:
        if ((int)sd->args[MOSIX_OUTCOME_ARG(c)] == (int)home_pid) {
            *result = priority_of_copy(sd, pid);
            return RD_ANSWER;
        }
        mode = mosix_mode_of_process(pid, dflt);
        break;
    case MOSIX_OUTCOME_FIXUP_PRIVATE: /* ENOSYS in every mode, a warning under -w */
        mode = mosix_mode_of_process(pid, dflt);
        if (mode == MOSIX_MODE_KILL)
            mode = MOSIX_MODE_ENOSYS;
        break;
    case MOSIX_OUTCOME_UNSUPPORTED:
        mode = mosix_mode_of_process(pid, dflt);
        break;
    default:
        return RD_NOT_GUARDED;
    }
    switch (mode) {
    case MOSIX_MODE_KILL:
        return RD_KILL;
    case MOSIX_MODE_WARN:
        return RD_WARN;
    case MOSIX_MODE_ENOSYS:
        break;
    }
    return RD_ANSWER;
}

long rd_message_request(enum rd_action action, pid_t pid, pid_t home_pid, long nr, void *buf,
                        size_t cap)
{
    char comm[32], msg[MOSIX_MESSAGE_MAX];
    long n = mosix_read_proc((int)pid, "comm", comm, sizeof(comm) - 1);
    if (n <= 0)
        n = snprintf(comm, sizeof(comm), "?");
    comm[n] = '\0';
    comm[strcspn(comm, "\n")] = '\0';
    size_t len = mosix_message(msg, sizeof(msg),
                               action == RD_KILL ? MOSIX_MSG_KILLED : MOSIX_MSG_ENOSYS, comm,
                               (long)home_pid, nr);
    size_t padded = (len + 7) & ~(size_t)7;
    struct fwd_request h;
    if (cap < sizeof(h) + padded)
        return -ENOBUFS;
    memset(&h, 0, sizeof(h));
    h.magic = FWD_REQUEST_MAGIC;
    h.nr = SYS_write;
    h.args[0] = STDERR_FILENO; /* the home process's standard error */
    h.args[1] = 1;             /* a pointer: its bytes are at span[1] */
    h.args[2] = len;
    h.span[1].off = 0;
    h.span[1].in_len = (uint32_t)len;
    h.data_len = (uint32_t)padded;
    unsigned char *out = buf;
    memcpy(out, &h, sizeof(h));
    memcpy(out + sizeof(h), msg, len);
    memset(out + sizeof(h) + len, 0, padded - len);
    return (long)(sizeof(h) + padded);
}

int rd_mode_of_letter(const char *letter)
{
    if (strcmp(letter, "u") == 0)
        return MOSIX_MODE_KILL;
    if (strcmp(letter, "e") == 0)
        return MOSIX_MODE_ENOSYS;
    if (strcmp(letter, "w") == 0)
        return MOSIX_MODE_WARN;
    return -1;
}
