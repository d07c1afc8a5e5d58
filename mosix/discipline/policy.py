"""The MOSIX discipline's system-call policy: one table, data not code.

Every x86-64 system call is listed once with its number, its policy and a
one-line reason.  Everything else is generated from this table by
``python -m mosix.generate``: the seccomp-bpf program and the name table
in ``csrc/generated/seccomp_table.h`` and the user's table in ``docs/SYSCALLS.md``.

Policies:

The discipline decides *where* a program may run, not *whether* it may run.
Every call gets one of three outcomes:

* ``allow`` (**carried**): the call runs, and works the same after the
  process moves: it works on the process's own memory, CPU state or signals
  (which a checkpoint or migration carries), on descriptors and files (which
  stay at the home node), or it only reads something.
* ``pinned``: the call runs natively, and from then on the process stays on
  the node it is on while what the call made or changed still holds (locked
  pages, shared maps, a NUMA memory policy, its own userfaultfd or perf
  counter).  The node agent reads that state from /proc
  (``mosix.sysinfo.proc_info.stay_reason``): it is what ``mosps -w`` and
  ``migrate`` say, and the pin lifts when the state goes (the pages are
  unlocked, the policy is reset, the descriptor is closed).  A
  process away from home that makes a pinned call is brought home first and
  the call runs there.
* ``unsupported`` (**refused**): calls that would let a program escape the
  discipline or the home model, or that administer the node.  What happens is
  the unsupported-call mode: killed with a message (-u, the default), ENOSYS
  (-e), or a message and ENOSYS (-w).
* ``enosys``: always fails with ENOSYS, whatever the mode (glibc then falls
  back, e.g. from clone3 to clone; calls Linux does not implement; features a
  kernel may be built without, which programs probe for).
* ``limited``: some argument values are fine, others are not; ``rules``
  are tried in order, the first whose conditions all hold decides, and
  ``otherwise`` decides when none does.

A rule's outcome can be more specific than allow/unsupported, see
:class:`Outcome`.  Numbers beyond the table (calls newer than it) fail with
ENOSYS, as on a kernel that does not have them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mosix import native_names


class Policy(enum.Enum):
    ALLOW = "allow"
    PINNED = "pinned"
    UNSUPPORTED = "unsupported"
    ENOSYS = "enosys"
    LIMITED = "limited"


class Outcome(enum.IntEnum):
    """What a call with given arguments gets (the values are shared with C)."""

    ALLOW = 0
    ENOSYS = 1  # fails with ENOSYS in every mode
    EPERM = 2  # fails with EPERM in every mode
    UNSUPPORTED = 3  # the unsupported-call mode applies (-u kill, -e ENOSYS, -w warn)
    FIXUP_PRIVATE = 4  # mmap MAP_SHARED without PROT_WRITE: made private (shim), else ENOSYS
    SELF_ONLY = 5  # allowed when the argument names the caller itself, else unsupported
    STOP_TO_TSTP = 6  # a SIGSTOP, sent as SIGTSTP instead
    KEEP_SIGSYS = 7  # the shim's SIGSYS handler stays: succeeds without effect
    # Not table outcomes: the filter's own checks.
    KILL = 8  # not x86-64 (i386 int 0x80, x32): the process is killed
    PROBE = 9  # the shim asks which mode the innermost filter has
    CHECKPOINT = 10  # MOSIX's own call: a program asks for its checkpoint (the guard serves it)
    # A table outcome (numbered after the others, which C and old images share):
    PIN = 11  # runs natively; the process stays on its node while the call's effect holds


# Outcomes that act on one of the call's arguments (which one is part of the rule).
OUTCOMES_WITH_ARGUMENT = (Outcome.FIXUP_PRIVATE, Outcome.SELF_ONLY, Outcome.STOP_TO_TSTP)

ALL_BITS = (1 << 64) - 1
LOW_BITS = (1 << 32) - 1


@dataclass(frozen=True)
class Arg:
    """Condition ``(args[index] & mask) == value`` on a 64-bit argument."""

    index: int
    value: int
    mask: int = ALL_BITS

    def holds(self, args: tuple[int, ...]) -> bool:
        return (args[self.index] & self.mask) == self.value

    def text(self) -> str:
        name = f"arg{self.index}"
        if self.mask == ALL_BITS:
            return f"{name} == {self.value:#x}"
        if self.mask == LOW_BITS:
            return f"(int){name} == {self.value:#x}"
        return f"{name} & {self.mask:#x} == {self.value:#x}"


def int_arg(index: int, value: int) -> Arg:
    """An ``int`` argument: the kernel looks at the low 32 bits only."""
    return Arg(index, value & LOW_BITS, LOW_BITS)


def null(index: int) -> Arg:
    return Arg(index, 0)


@dataclass(frozen=True)
class Rule:
    when: tuple[Arg, ...]
    then: Outcome
    on: int | None = None  # the argument an OUTCOMES_WITH_ARGUMENT outcome acts on

    def holds(self, args: tuple[int, ...]) -> bool:
        return all(a.holds(args) for a in self.when)


@dataclass(frozen=True)
class Decision:
    policy: Policy
    reason: str
    rules: tuple[Rule, ...] = ()
    otherwise: Outcome = Outcome.UNSUPPORTED

    def outcome(self, args: tuple[int, ...]) -> tuple[Outcome, int | None]:
        """The outcome (and its argument) for a call with ``args``."""
        match self.policy:
            case Policy.ALLOW:
                return Outcome.ALLOW, None
            case Policy.PINNED:
                return Outcome.PIN, None
            case Policy.UNSUPPORTED:
                return Outcome.UNSUPPORTED, None
            case Policy.ENOSYS:
                return Outcome.ENOSYS, None
        for rule in self.rules:
            if rule.holds(args):
                return rule.then, rule.on
        return self.otherwise, None


@dataclass(frozen=True)
class Syscall:
    nr: int
    name: str
    decision: Decision


def allow(reason: str) -> Decision:
    return Decision(Policy.ALLOW, reason)


def pinned(reason: str) -> Decision:
    return Decision(Policy.PINNED, reason)


def unsupported(reason: str) -> Decision:
    return Decision(Policy.UNSUPPORTED, reason)


def enosys(reason: str) -> Decision:
    return Decision(Policy.ENOSYS, reason)


def limited(reason: str, *rules: Rule, otherwise: Outcome = Outcome.UNSUPPORTED) -> Decision:
    return Decision(Policy.LIMITED, reason, rules, otherwise)


# ----------------------------------------------------------- constants used

SIGCHLD, SIGSTOP, SIGSYS = 17, 19, 31
CLONE_VM, CLONE_SIGHAND, CLONE_VFORK, CLONE_THREAD = 0x100, 0x800, 0x4000, 0x10000
CLONE_NEW_NAMESPACES = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)  # NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET
CLONE_A_THREAD = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD  # what the kernel needs for a thread
CLONE_SETTID_FLAGS = (
    0x00100000 | 0x00200000 | 0x01000000
)  # PARENT_SETTID CHILD_CLEARTID CHILD_SETTID
MAP_TYPE_BITS, MAP_PRIVATE = 0x3, 0x2
PROT_WRITE = 0x2
RLIMIT_NOFILE = 7
PRIO_PROCESS = 0

# prctl options the discipline lets through (the manual: PR_SET/GET_PDEATHSIG), and
# every read-only one (PR_GET_*, PR_CAPBSET_READ: ps and pgrep ask for the bounding set).
PRCTL_ALLOWED = {
    1: "PR_SET_PDEATHSIG",
    2: "PR_GET_PDEATHSIG",
    3: "PR_GET_DUMPABLE",
    4: "PR_SET_DUMPABLE",
    15: "PR_SET_NAME",
    16: "PR_GET_NAME",
    21: "PR_GET_SECCOMP",
    22: "PR_SET_SECCOMP",
    38: "PR_SET_NO_NEW_PRIVS",
    39: "PR_GET_NO_NEW_PRIVS",
    35: "PR_SET_MM",  # the restorer sets the recovered process's own memory-layout fields
    77: "PR_TIMER_CREATE_RESTORE_IDS",  # the restorer makes POSIX timers again with their ids
    # read-only
    5: "PR_GET_UNALIGN",
    7: "PR_GET_KEEPCAPS",
    9: "PR_GET_FPEMU",
    11: "PR_GET_FPEXC",
    13: "PR_GET_TIMING",
    19: "PR_GET_ENDIAN",
    23: "PR_CAPBSET_READ",
    25: "PR_GET_TSC",
    27: "PR_GET_SECUREBITS",
    30: "PR_GET_TIMERSLACK",
    34: "PR_MCE_KILL_GET",
    37: "PR_GET_CHILD_SUBREAPER",
    40: "PR_GET_TID_ADDRESS",
    42: "PR_GET_THP_DISABLE",
    46: "PR_GET_FP_MODE",
    52: "PR_GET_SPECULATION_CTRL",
    58: "PR_GET_IO_FLUSHER",
    66: "PR_GET_MDWE",
    68: "PR_GET_MEMORY_MERGE",
    74: "PR_GET_SHADOW_STACK_STATUS",
    0x41555856: "PR_GET_AUXV",
}
PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET = 47, 1

# ioctl requests the manual does not support (network/serial device configuration).
IOCTL_DENIED = {
    0x5458: "TIOCSERGSTRUCT",
    0x545A: "TIOCSERGETMULTI",
    0x545B: "TIOCSERSETMULTI",
    0x8914: "SIOCSIFFLAGS",
    0x891E: "SIOCSIFMETRIC",
    0x8922: "SIOCSIFMTU",
    0x8971: "SIOCSIFMAP",
    0x8924: "SIOCSIFHWADDR",
    0x8930: "SIOCSIFSLAVE",
    0x8931: "SIOCADDMULTI",
    0x8932: "SIOCDELMULTI",
    0x8937: "SIOCSIFHWBROADCAST",
    0x8943: "SIOCSIFTXQLEN",
    0x8949: "SIOCSMIIREG",
    0x8990: "SIOCBONDENSLAVE",
    0x8991: "SIOCBONDRELEASE",
    0x8992: "SIOCBONDSETHWADDR",
    0x8993: "SIOCBONDSLAVEINFOQUERY",
    0x8994: "SIOCBONDINFOQUERY",
    0x8995: "SIOCBONDCHANGEACTIVE",
    0x89A2: "SIOCBRADDIF",
    0x89A3: "SIOCBRDELIF",
}

# ------------------------------------------------------------ the decisions

IO = allow("I/O on an open descriptor; descriptors stay at the home node")
PATH = allow("file-system call by path; performed at the home node")
MEM = allow("the process's own memory; carried with the process")
SIG = allow("the process's own signal state; carried with the process")
NET = allow("socket call; sockets stay at the home node")
IPC = allow("System V IPC object; it lives at the home node")
MQ = allow("POSIX message queue: a descriptor at the home node, like System V messages")
TIME = allow("reads a clock or sleeps; changes nothing on the node")
TIMER = allow("per-process timer; a checkpoint records it")
KOBJ = allow("poll/notify object behind a descriptor; stays at the home node")
PROC = allow("process identity, credentials or group; kept for the process by the home node")
LIFE = allow("creates or ends a process (fork-like); the child stays under the discipline")
WAIT = allow("waits for the process's own children")
QUERY = allow("read-only query; the answer is about wherever the process runs now")
CAPGET = allow("read-only query of the process's own capabilities (node's runtime asks)")
MEMPOLICY_GET = allow("read-only query of the process's NUMA memory policy")
UNLOCK = allow("unlocks the process's own pages: releases what mlock pinned")
FUTEX = allow("user-memory synchronisation glibc uses even without threads; carried with memory")
SELFRESTRICT = allow("restricts only the caller itself (filters stack; nothing escapes)")
ARCH = allow("per-process CPU register state (FS/GS base for TLS); ld.so needs it")
URETPROBE = allow("only callable from the kernel's own uretprobe trampoline")
ENOSYS_NI = enosys("not implemented by Linux on x86-64: ENOSYS, as natively")
ENOSYS_CLONE3 = enosys(
    "its flags are behind a pointer a filter cannot read: ENOSYS, glibc falls back to clone"
)
U_ADMIN = unsupported("system administration of the local node")
U_NS = unsupported("namespaces, mounts and the root are properties of the local node")
U_MODULE = unsupported("loads kernel code (or an a.out library) on the local node")
U_CLOCK = unsupported("sets the local node's clock")
P_LOCK = pinned(
    "locks pages in the local node's RAM: pinned while any are locked (VmLck); the manual "
    "refuses it"
)
P_NUMA = pinned(
    "NUMA placement on the local node's memory: pinned while a policy other than the default "
    "holds (numa_maps); the manual refuses it"
)
P_SHM = pinned(
    "attaches System V shared memory: pinned while it is attached (a shared map); the manual "
    "refuses it"
)
U_CPU = unsupported("binds to the local node's CPUs, scheduler classes or disks")
U_NUMA = unsupported("NUMA placement on the local node's memory")
U_PORT = unsupported("hardware ports or segment descriptors of the local CPU")
U_OTHER = unsupported("reaches into another process's memory, descriptors or kernel objects")
U_KEYS = unsupported("kernel keyrings are local to the node")
U_TRACE = unsupported("kernel tracing or eBPF on the local node")
P_UFFD = pinned(
    "serves page faults of its own memory (a user-space pager): pinned while the userfaultfd "
    "is open; the manual refuses it"
)
LIM_PERF = limited(
    "counts its own events (pid 0: profilers, benchmark libraries): pinned while the counter "
    "is open (it counts on the local CPU); another process's or a whole CPU's events are not "
    "supported",
    Rule((int_arg(1, 0),), Outcome.PIN),
)
U_AIO = unsupported("kernel-shared rings or AIO contexts cannot be forwarded or migrated")
U_SHM = unsupported("shares memory (or pages) with other processes or the kernel: cannot migrate")
U_SEM = unsupported("not supported by the manual (SYSV ipc: semtimedop)")
U_CAP = unsupported("sets capabilities: privileges on the local node")
U_PERS = unsupported("changes the execution domain on the local node")
ENOSYS_HW = enosys(
    "a CPU or memory feature another node may lack (protection keys, shadow stack, secret "
    "memory): ENOSYS, as on a kernel built without it (node and V8 go on without)"
)
U_LSM = unsupported("sets a security-module label of the local node")

LIM_CLONE = limited(
    "fork-like (SIGCHLD, no stack) and posix_spawn-like (CLONE_VM|CLONE_VFORK, any stack) are "
    "carried; a thread (CLONE_VM|CLONE_SIGHAND|CLONE_THREAD, no new namespace: pthread_create, "
    "Go, OpenMP) is carried too: the threads move with the process (more than an image holds "
    "pin it); other sharing is not supported",
    Rule((Arg(0, SIGCHLD, LOW_BITS & ~CLONE_SETTID_FLAGS), null(1)), Outcome.ALLOW),
    Rule(
        (Arg(0, CLONE_VM | CLONE_VFORK | SIGCHLD, LOW_BITS & ~CLONE_SETTID_FLAGS),), Outcome.ALLOW
    ),
    # No exit signal: the checkpointer's frozen copy (invisible to wait() without __WCLONE).
    Rule((Arg(0, 0, ALL_BITS), null(1)), Outcome.ALLOW),
    Rule((Arg(0, CLONE_A_THREAD, CLONE_A_THREAD | CLONE_NEW_NAMESPACES),), Outcome.ALLOW),
)
LIM_MMAP = limited(
    "MAP_PRIVATE is carried; read-only shared maps (glibc's gconv cache) are made private in "
    "every mode; a writable MAP_SHARED (multiprocessing's semaphores in /dev/shm) is pinned "
    "while it is mapped (the manual refuses it)",
    Rule((Arg(3, MAP_PRIVATE, MAP_TYPE_BITS),), Outcome.ALLOW),
    Rule((Arg(3, 0, MAP_TYPE_BITS),), Outcome.ALLOW),  # neither: the kernel says EINVAL
    Rule((Arg(2, 0, PROT_WRITE),), Outcome.FIXUP_PRIVATE, on=3),
    otherwise=Outcome.PIN,
)
LIM_PRCTL = limited(
    "only " + ", ".join(PRCTL_ALLOWED.values()) + " and PR_CAP_AMBIENT_IS_SET",
    *(Rule((int_arg(0, option),), Outcome.ALLOW) for option in PRCTL_ALLOWED),
    Rule((int_arg(0, PR_CAP_AMBIENT), Arg(1, PR_CAP_AMBIENT_IS_SET)), Outcome.ALLOW),
)
LIM_IOCTL = limited(
    "network and serial device configuration requests are not supported (list in the manual)",
    *(Rule((int_arg(1, request),), Outcome.UNSUPPORTED) for request in IOCTL_DENIED),
    otherwise=Outcome.ALLOW,
)
LIM_SETRLIMIT = limited(
    "RLIMIT_NOFILE is fixed at 1024: changing it fails with EPERM (not a kill: `ulimit -n N`)",
    Rule((int_arg(0, RLIMIT_NOFILE),), Outcome.EPERM),
    otherwise=Outcome.ALLOW,
)
LIM_PRLIMIT = limited(
    "reading is fine; RLIMIT_NOFILE is fixed (EPERM); setting another process's is unsupported",
    Rule((null(2),), Outcome.ALLOW),
    Rule((int_arg(1, RLIMIT_NOFILE),), Outcome.EPERM),
    Rule((int_arg(0, 0),), Outcome.ALLOW),
)
LIM_PRIO = limited(
    "may refer only to the calling process (PRIO_PROCESS, 0 or its own pid)",
    Rule((int_arg(0, PRIO_PROCESS), int_arg(1, 0)), Outcome.ALLOW),
    Rule((int_arg(0, PRIO_PROCESS),), Outcome.SELF_ONLY, on=1),
)
LIM_KILL = limited(
    "SIGSTOP is sent as SIGTSTP (the manual); static programs get EPERM for SIGSTOP",
    Rule((int_arg(1, SIGSTOP),), Outcome.STOP_TO_TSTP, on=1),
    otherwise=Outcome.ALLOW,
)
LIM_KILL3 = limited(
    "SIGSTOP is sent as SIGTSTP (the manual); static programs get EPERM for SIGSTOP",
    Rule((int_arg(2, SIGSTOP),), Outcome.STOP_TO_TSTP, on=2),
    otherwise=Outcome.ALLOW,
)
LIM_SIGACTION = limited(
    "setting SIGSYS succeeds without effect: the shim's handler stays (libc calls see a shadow)",
    Rule((int_arg(0, SIGSYS), null(1)), Outcome.ALLOW),
    Rule((int_arg(0, SIGSYS),), Outcome.KEEP_SIGSYS),
    otherwise=Outcome.ALLOW,
)
LIM_ROBUST = limited(
    "the caller's own list only (pid 0); another process's list is ptrace-like",
    Rule((int_arg(0, 0),), Outcome.ALLOW),
)

# ---------------------------------------------------------------- the table

SYSCALLS: tuple[Syscall, ...] = tuple(
    Syscall(nr, name, decision)
    for nr, name, decision in (
        (0, "read", IO),
        (1, "write", IO),
        (2, "open", PATH),
        (3, "close", IO),
        (4, "stat", PATH),
        (5, "fstat", IO),
        (6, "lstat", PATH),
        (7, "poll", IO),
        (8, "lseek", IO),
        (9, "mmap", LIM_MMAP),
        (10, "mprotect", MEM),
        (11, "munmap", MEM),
        (12, "brk", MEM),
        (13, "rt_sigaction", LIM_SIGACTION),
        (14, "rt_sigprocmask", SIG),
        (15, "rt_sigreturn", SIG),
        (16, "ioctl", LIM_IOCTL),
        (17, "pread64", IO),
        (18, "pwrite64", IO),
        (19, "readv", IO),
        (20, "writev", IO),
        (21, "access", PATH),
        (22, "pipe", IO),
        (23, "select", IO),
        (24, "sched_yield", QUERY),
        (25, "mremap", MEM),
        (26, "msync", MEM),
        (27, "mincore", MEM),
        (28, "madvise", MEM),
        (29, "shmget", IPC),
        (30, "shmat", P_SHM),
        (31, "shmctl", IPC),
        (32, "dup", IO),
        (33, "dup2", IO),
        (34, "pause", SIG),
        (35, "nanosleep", TIME),
        (36, "getitimer", TIME),
        (37, "alarm", TIME),
        (38, "setitimer", TIME),
        (39, "getpid", PROC),
        (40, "sendfile", IO),
        (41, "socket", NET),
        (42, "connect", NET),
        (43, "accept", NET),
        (44, "sendto", NET),
        (45, "recvfrom", NET),
        (46, "sendmsg", NET),
        (47, "recvmsg", NET),
        (48, "shutdown", NET),
        (49, "bind", NET),
        (50, "listen", NET),
        (51, "getsockname", NET),
        (52, "getpeername", NET),
        (53, "socketpair", NET),
        (54, "setsockopt", NET),
        (55, "getsockopt", NET),
        (56, "clone", LIM_CLONE),
        (57, "fork", LIFE),
        (58, "vfork", LIFE),
        (59, "execve", PATH),
        (60, "exit", LIFE),
        (61, "wait4", WAIT),
        (62, "kill", LIM_KILL),
        (63, "uname", QUERY),
        (64, "semget", IPC),
        (65, "semop", IPC),
        (66, "semctl", IPC),
        (67, "shmdt", IPC),
        (68, "msgget", IPC),
        (69, "msgsnd", IPC),
        (70, "msgrcv", IPC),
        (71, "msgctl", IPC),
        (72, "fcntl", IO),
        (73, "flock", IO),
        (74, "fsync", IO),
        (75, "fdatasync", IO),
        (76, "truncate", PATH),
        (77, "ftruncate", IO),
        (78, "getdents", IO),
        (79, "getcwd", PATH),
        (80, "chdir", PATH),
        (81, "fchdir", IO),
        (82, "rename", PATH),
        (83, "mkdir", PATH),
        (84, "rmdir", PATH),
        (85, "creat", PATH),
        (86, "link", PATH),
        (87, "unlink", PATH),
        (88, "symlink", PATH),
        (89, "readlink", PATH),
        (90, "chmod", PATH),
        (91, "fchmod", IO),
        (92, "chown", PATH),
        (93, "fchown", IO),
        (94, "lchown", PATH),
        (95, "umask", PATH),
        (96, "gettimeofday", TIME),
        (97, "getrlimit", QUERY),
        (98, "getrusage", QUERY),
        (99, "sysinfo", QUERY),
        (100, "times", QUERY),
        (101, "ptrace", U_OTHER),
        (102, "getuid", PROC),
        (103, "syslog", U_ADMIN),
        (104, "getgid", PROC),
        (105, "setuid", PROC),
        (106, "setgid", PROC),
        (107, "geteuid", PROC),
        (108, "getegid", PROC),
        (109, "setpgid", PROC),
        (110, "getppid", PROC),
        (111, "getpgrp", PROC),
        (112, "setsid", PROC),
        (113, "setreuid", PROC),
        (114, "setregid", PROC),
        (115, "getgroups", PROC),
        (116, "setgroups", PROC),
        (117, "setresuid", PROC),
        (118, "getresuid", PROC),
        (119, "setresgid", PROC),
        (120, "getresgid", PROC),
        (121, "getpgid", PROC),
        (122, "setfsuid", PROC),
        (123, "setfsgid", PROC),
        (124, "getsid", PROC),
        (125, "capget", CAPGET),
        (126, "capset", U_CAP),
        (127, "rt_sigpending", SIG),
        (128, "rt_sigtimedwait", SIG),
        (129, "rt_sigqueueinfo", LIM_KILL),
        (130, "rt_sigsuspend", SIG),
        (131, "sigaltstack", SIG),
        (132, "utime", PATH),
        (133, "mknod", PATH),
        (134, "uselib", U_MODULE),
        (135, "personality", U_PERS),
        (136, "ustat", QUERY),
        (137, "statfs", PATH),
        (138, "fstatfs", IO),
        (139, "sysfs", QUERY),
        (140, "getpriority", LIM_PRIO),
        (141, "setpriority", LIM_PRIO),
        (142, "sched_setparam", U_CPU),
        (143, "sched_getparam", QUERY),
        (144, "sched_setscheduler", U_CPU),
        (145, "sched_getscheduler", QUERY),
        (146, "sched_get_priority_max", QUERY),
        (147, "sched_get_priority_min", QUERY),
        (148, "sched_rr_get_interval", QUERY),
        (149, "mlock", P_LOCK),
        (150, "munlock", UNLOCK),
        (151, "mlockall", P_LOCK),
        (152, "munlockall", UNLOCK),
        (153, "vhangup", U_ADMIN),
        (154, "modify_ldt", U_PORT),
        (155, "pivot_root", U_NS),
        (156, "_sysctl", ENOSYS_NI),
        (157, "prctl", LIM_PRCTL),
        (158, "arch_prctl", ARCH),
        (159, "adjtimex", U_CLOCK),
        (160, "setrlimit", LIM_SETRLIMIT),
        (161, "chroot", U_NS),
        (162, "sync", PATH),
        (163, "acct", U_ADMIN),
        (164, "settimeofday", U_CLOCK),
        (165, "mount", U_NS),
        (166, "umount2", U_NS),
        (167, "swapon", U_ADMIN),
        (168, "swapoff", U_ADMIN),
        (169, "reboot", U_ADMIN),
        (170, "sethostname", U_ADMIN),
        (171, "setdomainname", U_ADMIN),
        (172, "iopl", U_PORT),
        (173, "ioperm", U_PORT),
        (174, "create_module", ENOSYS_NI),
        (175, "init_module", U_MODULE),
        (176, "delete_module", U_MODULE),
        (177, "get_kernel_syms", ENOSYS_NI),
        (178, "query_module", ENOSYS_NI),
        (179, "quotactl", U_ADMIN),
        (180, "nfsservctl", ENOSYS_NI),
        (181, "getpmsg", ENOSYS_NI),
        (182, "putpmsg", ENOSYS_NI),
        (183, "afs_syscall", ENOSYS_NI),
        (184, "tuxcall", ENOSYS_NI),
        (185, "security", ENOSYS_NI),
        (186, "gettid", PROC),
        (187, "readahead", IO),
        (188, "setxattr", PATH),
        (189, "lsetxattr", PATH),
        (190, "fsetxattr", IO),
        (191, "getxattr", PATH),
        (192, "lgetxattr", PATH),
        (193, "fgetxattr", IO),
        (194, "listxattr", PATH),
        (195, "llistxattr", PATH),
        (196, "flistxattr", IO),
        (197, "removexattr", PATH),
        (198, "lremovexattr", PATH),
        (199, "fremovexattr", IO),
        (200, "tkill", LIM_KILL),
        (201, "time", TIME),
        (202, "futex", FUTEX),
        (203, "sched_setaffinity", U_CPU),
        (204, "sched_getaffinity", QUERY),
        (205, "set_thread_area", U_PORT),
        (206, "io_setup", U_AIO),
        (207, "io_destroy", U_AIO),
        (208, "io_getevents", U_AIO),
        (209, "io_submit", U_AIO),
        (210, "io_cancel", U_AIO),
        (211, "get_thread_area", U_PORT),
        (212, "lookup_dcookie", U_ADMIN),
        (213, "epoll_create", KOBJ),
        (214, "epoll_ctl_old", ENOSYS_NI),
        (215, "epoll_wait_old", ENOSYS_NI),
        (216, "remap_file_pages", U_SHM),
        (217, "getdents64", IO),
        (218, "set_tid_address", PROC),
        (219, "restart_syscall", SIG),
        (220, "semtimedop", U_SEM),
        (221, "fadvise64", IO),
        (222, "timer_create", TIMER),
        (223, "timer_settime", TIMER),
        (224, "timer_gettime", TIMER),
        (225, "timer_getoverrun", TIMER),
        (226, "timer_delete", TIMER),
        (227, "clock_settime", U_CLOCK),
        (228, "clock_gettime", TIME),
        (229, "clock_getres", TIME),
        (230, "clock_nanosleep", TIME),
        (231, "exit_group", LIFE),
        (232, "epoll_wait", KOBJ),
        (233, "epoll_ctl", KOBJ),
        (234, "tgkill", LIM_KILL3),
        (235, "utimes", PATH),
        (236, "vserver", ENOSYS_NI),
        (237, "mbind", P_NUMA),
        (238, "set_mempolicy", P_NUMA),
        (239, "get_mempolicy", MEMPOLICY_GET),
        (240, "mq_open", MQ),
        (241, "mq_unlink", MQ),
        (242, "mq_timedsend", MQ),
        (243, "mq_timedreceive", MQ),
        (244, "mq_notify", MQ),
        (245, "mq_getsetattr", MQ),
        (246, "kexec_load", U_MODULE),
        (247, "waitid", WAIT),
        (248, "add_key", U_KEYS),
        (249, "request_key", U_KEYS),
        (250, "keyctl", U_KEYS),
        (251, "ioprio_set", U_CPU),
        (252, "ioprio_get", U_CPU),
        (253, "inotify_init", KOBJ),
        (254, "inotify_add_watch", KOBJ),
        (255, "inotify_rm_watch", KOBJ),
        (256, "migrate_pages", U_NUMA),
        (257, "openat", PATH),
        (258, "mkdirat", PATH),
        (259, "mknodat", PATH),
        (260, "fchownat", PATH),
        (261, "futimesat", PATH),
        (262, "newfstatat", PATH),
        (263, "unlinkat", PATH),
        (264, "renameat", PATH),
        (265, "linkat", PATH),
        (266, "symlinkat", PATH),
        (267, "readlinkat", PATH),
        (268, "fchmodat", PATH),
        (269, "faccessat", PATH),
        (270, "pselect6", IO),
        (271, "ppoll", IO),
        (272, "unshare", U_NS),
        (273, "set_robust_list", FUTEX),
        (274, "get_robust_list", LIM_ROBUST),
        (275, "splice", IO),
        (276, "tee", IO),
        (277, "sync_file_range", IO),
        (278, "vmsplice", U_SHM),
        (279, "move_pages", U_NUMA),
        (280, "utimensat", PATH),
        (281, "epoll_pwait", KOBJ),
        (282, "signalfd", SIG),
        (283, "timerfd_create", TIMER),
        (284, "eventfd", KOBJ),
        (285, "fallocate", IO),
        (286, "timerfd_settime", TIMER),
        (287, "timerfd_gettime", TIMER),
        (288, "accept4", NET),
        (289, "signalfd4", SIG),
        (290, "eventfd2", KOBJ),
        (291, "epoll_create1", KOBJ),
        (292, "dup3", IO),
        (293, "pipe2", IO),
        (294, "inotify_init1", KOBJ),
        (295, "preadv", IO),
        (296, "pwritev", IO),
        (297, "rt_tgsigqueueinfo", LIM_KILL3),
        (298, "perf_event_open", LIM_PERF),
        (299, "recvmmsg", NET),
        (300, "fanotify_init", U_ADMIN),
        (301, "fanotify_mark", U_ADMIN),
        (302, "prlimit64", LIM_PRLIMIT),
        (303, "name_to_handle_at", PATH),
        (304, "open_by_handle_at", U_ADMIN),
        (305, "clock_adjtime", U_CLOCK),
        (306, "syncfs", IO),
        (307, "sendmmsg", NET),
        (308, "setns", U_NS),
        (309, "getcpu", QUERY),
        (310, "process_vm_readv", U_OTHER),
        (311, "process_vm_writev", U_OTHER),
        (312, "kcmp", U_OTHER),
        (313, "finit_module", U_MODULE),
        (314, "sched_setattr", U_CPU),
        (315, "sched_getattr", QUERY),
        (316, "renameat2", PATH),
        (317, "seccomp", SELFRESTRICT),
        (318, "getrandom", QUERY),
        (319, "memfd_create", MEM),
        (320, "kexec_file_load", U_MODULE),
        (321, "bpf", U_TRACE),
        (322, "execveat", PATH),
        (323, "userfaultfd", P_UFFD),
        (324, "membarrier", MEM),
        (325, "mlock2", P_LOCK),
        (326, "copy_file_range", IO),
        (327, "preadv2", IO),
        (328, "pwritev2", IO),
        (329, "pkey_mprotect", ENOSYS_HW),
        (330, "pkey_alloc", ENOSYS_HW),
        (331, "pkey_free", ENOSYS_HW),
        (332, "statx", PATH),
        (333, "io_pgetevents", U_AIO),
        (334, "rseq", FUTEX),
        (335, "uretprobe", URETPROBE),
        (424, "pidfd_send_signal", LIM_KILL),
        (425, "io_uring_setup", U_AIO),
        (426, "io_uring_enter", U_AIO),
        (427, "io_uring_register", U_AIO),
        (428, "open_tree", U_NS),
        (429, "move_mount", U_NS),
        (430, "fsopen", U_NS),
        (431, "fsconfig", U_NS),
        (432, "fsmount", U_NS),
        (433, "fspick", U_NS),
        (434, "pidfd_open", PROC),
        (435, "clone3", ENOSYS_CLONE3),
        (436, "close_range", IO),
        (437, "openat2", PATH),
        (438, "pidfd_getfd", U_OTHER),
        (439, "faccessat2", PATH),
        (440, "process_madvise", U_OTHER),
        (441, "epoll_pwait2", KOBJ),
        (442, "mount_setattr", U_NS),
        (443, "quotactl_fd", U_ADMIN),
        (444, "landlock_create_ruleset", SELFRESTRICT),
        (445, "landlock_add_rule", SELFRESTRICT),
        (446, "landlock_restrict_self", SELFRESTRICT),
        (447, "memfd_secret", ENOSYS_HW),
        (448, "process_mrelease", U_OTHER),
        (449, "futex_waitv", FUTEX),
        (450, "set_mempolicy_home_node", P_NUMA),
        (451, "cachestat", IO),
        (452, "fchmodat2", PATH),
        (453, "map_shadow_stack", ENOSYS_HW),
        (454, "futex_wake", FUTEX),
        (455, "futex_wait", FUTEX),
        (456, "futex_requeue", FUTEX),
        (457, "statmount", QUERY),
        (458, "listmount", QUERY),
        (459, "lsm_get_self_attr", QUERY),
        (460, "lsm_set_self_attr", U_LSM),
        (461, "lsm_list_modules", QUERY),
        (462, "mseal", MEM),
        (463, "setxattrat", PATH),
        (464, "getxattrat", PATH),
        (465, "listxattrat", PATH),
        (466, "removexattrat", PATH),
        (467, "open_tree_attr", U_NS),
        (468, "file_getattr", PATH),
        (469, "file_setattr", PATH),
    )
)

BY_NAME: dict[str, Syscall] = {s.name: s for s in SYSCALLS}
BY_NR: dict[int, Syscall] = {s.nr: s for s in SYSCALLS}


@dataclass(frozen=True)
class PrivateDirCheck:
    """A call that makes a name, checked for the private temporary directories
    (mosrun -X): only regular files live there, so when the name's directory is
    one of them the call fails with EPERM, as on a file system that does not
    support that kind of file (mkdir(2), symlink(2), link(2), mknod(2)).

    ``dirfd_arg``: the argument with the directory descriptor (None: the cwd);
    ``path_arg``: the new name; ``mode_arg``: mknod's mode, whose regular files
    (S_IFREG or no type) are allowed.  A rename or link from another file
    system fails with EXDEV in the kernel (each directory is a mount of its own).
    """

    name: str
    dirfd_arg: int | None
    path_arg: int
    mode_arg: int | None = None


PRIVATE_DIR_CHECKS: tuple[PrivateDirCheck, ...] = (
    PrivateDirCheck("mkdir", None, 0),
    PrivateDirCheck("mkdirat", 0, 1),
    PrivateDirCheck("symlink", None, 1),
    PrivateDirCheck("symlinkat", 1, 2),
    PrivateDirCheck("link", None, 1),
    PrivateDirCheck("linkat", 2, 3),
    PrivateDirCheck("mknod", None, 0, 1),
    PrivateDirCheck("mknodat", 0, 1, 2),
)

# The number the shim uses to ask for the mode (beyond every real call, below x32).
PROBE_NR = 0x3F4D5358
# The number of MOSIX's checkpoint call: defined with the names C and Python share.
CHECKPOINT_NR = native_names.CHECKPOINT_NR
PROBE_ERRNO_BASE = 4000  # the probe fails with PROBE_ERRNO_BASE + mode index
MODES = ("u", "e", "w")  # mode index: -u (kill), -e (ENOSYS), -w (warn and ENOSYS)

# What the MOSIX manual (mosrun(1), LIMITATIONS) lists as unsupported or limited on
# x86-64; docs/SYSCALLS.md shows where this table decides differently and why.
MANUAL_UNSUPPORTED = frozenset(
    [
        "acct",
        "add_key",
        "adjtimex",
        "afs_syscall",
        "capget",
        "capset",
        "chroot",
        "clock_getres",
        "clock_nanosleep",
        "clock_settime",
        "create_module",
        "delete_module",
        "epoll_create",
        "epoll_ctl",
        "epoll_pwait",
        "epoll_wait",
        "eventfd",
        "futex",
        "get_kernel_syms",
        "get_mempolicy",
        "get_robust_list",
        "getcpu",
        "getpmsg",
        "init_module",
        "inotify_add_watch",
        "inotify_init",
        "inotify_rm_watch",
        "io_cancel",
        "io_destroy",
        "io_getevents",
        "io_setup",
        "io_submit",
        "ioperm",
        "iopl",
        "ioprio_get",
        "ioprio_set",
        "kexec_load",
        "keyctl",
        "lookup_dcookie",
        "madvise",
        "mbind",
        "migrate_pages",
        "mlock",
        "mlockall",
        "move_pages",
        "mq_getsetattr",
        "mq_notify",
        "mq_open",
        "mq_timedreceive",
        "mq_timedsend",
        "mq_unlink",
        "munlock",
        "munlockall",
        "nfsservctl",
        "personality",
        "pivot_root",
        "ptrace",
        "quotactl",
        "reboot",
        "remap_file_pages",
        "request_key",
        "rt_sigqueueinfo",
        "rt_sigtimedwait",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_getaffinity",
        "sched_getparam",
        "sched_getscheduler",
        "sched_rr_get_interval",
        "sched_setaffinity",
        "sched_setparam",
        "sched_setscheduler",
        "security",
        "set_mempolicy",
        "setdomainname",
        "sethostname",
        "set_robust_list",
        "settimeofday",
        "shmat",
        "signalfd",
        "swapoff",
        "swapon",
        "syslog",
        "timer_create",
        "timer_delete",
        "timer_getoverrun",
        "timer_gettime",
        "timer_settime",
        "timerfd_create",
        "timerfd_gettime",
        "timerfd_settime",
        "tuxcall",
        "unshare",
        "uselib",
        "vmsplice",
        "waitid",
        "semtimedop",
    ]
)
MANUAL_LIMITED = frozenset(
    ["clone", "getpriority", "ioctl", "mmap", "prctl", "setpriority", "setrlimit", "kill"]
)
