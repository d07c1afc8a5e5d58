"""Where each system call of a migrated process runs, and how it is marshalled.

A migrated process runs on a remote node as a restored copy.  A seccomp
filter in it (the *forward filter*, generated from this table) hands every
call that must run at home to a supervisor on the remote node (seccomp user
notification); the supervisor marshals it with ``csrc/forward/``,
the *deputy* at home executes it natively and the reply's output buffers are
written back into the process.  This module is the one definition of

* the **placement** of every x86-64 system call of the policy table
  (:data:`mosix.discipline.policy.SYSCALLS`) on a remote node, and
* for calls that go home, the **kind** of each argument: a value passed as
  is, a path, an input/output buffer and its size, an iovec array, a msghdr.

Everything else is generated from it (``python -m mosix.generate``):
``csrc/generated/forward_table.h`` (the C table and the forward filter) and the column
"on a remote node" of ``docs/SYSCALLS.md``.

Placements (the values are shared with C, ``enum fwd_placement``):

* ``LOCAL``: runs on the remote node (memory, signal handling, pure CPU).
* ``HOME``: executed by the deputy at home (files, descriptors, sockets,
  identity, the terminal, children, ...).
* ``TIME``: reads a clock: forwarded home unless the process runs with -t
  (the supervisor decides).
* ``BRING_HOME``: the process is migrated home and the call runs there
  (fork, vfork, clone, clone3, execve, execveat).
* ``FILE_MAP``: mmap of a file (the supervisor maps it).
* ``SPLIT``: sendmmsg and recvmmsg: the supervisor forwards one sendmsg or
  recvmsg per message (the table cannot marshal an array of msghdr).
* ``UNFORWARDABLE``: its arguments cannot be marshalled by a table (pointers
  inside structures whose size the kernel learns from the structure); the
  supervisor answers with the entry's errno (ENOSYS, ENOTTY for unknown ioctl
  requests).

Calls the discipline pins (policy pinned, or a limited rule's PIN:
writable shared maps) are BRING_HOME: the process comes home and the call
runs there, natively, and keeps it home.

Calls the discipline refuses (policy unsupported/enosys, or a limited rule's
refusal) get a placement too (LOCAL for most), but the forward filter decides
them by the policy: what the guard answers at home (the unsupported-call mode)
goes to the supervisor, which applies the mode the same way (the copy's base
filter has no listener); ENOSYS and EPERM are left to the base filter.

A pointer argument that is 0 stays 0 at home (the kernel there then decides,
as it would have here).  Every size is checked against ``FWD_MAX_DATA`` on
both sides: read/write-like counts are clamped (a short read or write is
legal), other oversized buffers fail with E2BIG.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mosix.discipline.policy import (
    ALL_BITS,
    BY_NAME,
    CLONE_A_THREAD,
    CLONE_NEW_NAMESPACES,
    LOW_BITS,
    SYSCALLS,
    Arg,
    Decision,
    Outcome,
    Policy,
)

FWD_MAX_DATA = 1 << 20  # bytes of buffers in one request or reply (each direction)
PATH_MAX = 4096  # a PATH argument, with its NUL
ENOSYS, ENOTTY = 38, 25


class Placement(enum.IntEnum):
    LOCAL = 0
    HOME = 1
    TIME = 2
    BRING_HOME = 3
    FILE_MAP = 4
    UNFORWARDABLE = 5
    SPLIT = 6


class Kind(enum.IntEnum):
    """How one argument travels (the values are shared with C)."""

    VAL = 1  # passed as is: ints, descriptors, flags, pids
    PATH = 2  # NUL-terminated string of at most PATH_MAX bytes
    IN = 3  # buffer the kernel reads
    OUT = 4  # buffer the kernel writes
    INOUT = 5  # buffer the kernel reads and writes
    IOV_IN = 6  # struct iovec array (count from size.arg), the kernel reads the buffers
    IOV_OUT = 7  # struct iovec array, the kernel writes the buffers
    MSG_IN = 8  # struct msghdr for sendmsg: name, iovecs, control data, all read
    MSG_OUT = 9  # struct msghdr for recvmsg: name, iovecs and control written back
    DROP = 10  # not sent; 0 at home (a signal mask for the remote's own signals)


POINTER_KINDS = frozenset(Kind) - {Kind.VAL, Kind.DROP}
OUTPUT_KINDS = frozenset({Kind.OUT, Kind.INOUT, Kind.IOV_OUT, Kind.MSG_OUT})
INPUT_KINDS = frozenset({Kind.PATH, Kind.IN, Kind.INOUT, Kind.IOV_IN, Kind.MSG_IN})


class SizeHow(enum.IntEnum):
    """Where a buffer's size comes from (the values are shared with C)."""

    NONE = 0
    CONST = 1  # ``add`` bytes
    ARG = 2  # args[arg] * mul + add bytes (IOV kinds: args[arg] iovecs)
    FDSET = 3  # the fd_set bytes for args[arg] descriptors: (n + 63) / 64 * 8
    LENPTR = 4  # the socklen_t that args[arg] points to (an INOUT(4) argument)


@dataclass(frozen=True)
class Size:
    how: SizeHow = SizeHow.NONE
    arg: int = 0
    mul: int = 1
    add: int = 0

    def text(self) -> str:
        match self.how:
            case SizeHow.CONST:
                return str(self.add)
            case SizeHow.ARG:
                text = f"arg{self.arg}" + (f"*{self.mul}" if self.mul != 1 else "")
                return text + (f"+{self.add}" if self.add else "")
            case SizeHow.FDSET:
                return f"fd_set(arg{self.arg})"
            case SizeHow.LENPTR:
                return f"*arg{self.arg}"
        return ""


@dataclass(frozen=True)
class ArgSpec:
    kind: Kind
    size: Size = Size()
    ret_sized: bool = False  # only min(size, ret * mul) bytes come back
    clamp: bool = False  # a size beyond FWD_MAX_DATA is clamped (short read/write)

    def text(self) -> str:
        name = {Kind.VAL: "val", Kind.PATH: "path", Kind.DROP: "dropped"}.get(self.kind)
        if name:
            return name
        detail = [self.size.text()] if self.size.how is not SizeHow.NONE else []
        detail += ["≤ret"] * self.ret_sized + ["clamped"] * self.clamp
        kind = self.kind.name.lower()
        return f"{kind}[{', '.join(detail)}]" if detail else kind


@dataclass(frozen=True)
class Spec:
    """Where a call runs and, when it is marshalled, how each argument travels."""

    placement: Placement
    args: tuple[ArgSpec, ...] = ()
    error: int = 0  # UNFORWARDABLE: the errno the supervisor answers

    def text(self) -> str:
        if self.placement is Placement.UNFORWARDABLE:
            return "unforwardable (" + {ENOSYS: "ENOSYS", ENOTTY: "ENOTTY"}[self.error] + ")"
        name = self.placement.name.lower().replace("_", " ")
        if self.placement not in (Placement.HOME, Placement.TIME):
            return name
        return f"{name}({', '.join(a.text() for a in self.args)})"


@dataclass(frozen=True)
class Case:
    """``spec`` applies when every condition holds (at most two, on value arguments)."""

    when: tuple[Arg, ...]
    spec: Spec
    label: str = ""

    def holds(self, args: tuple[int, ...]) -> bool:
        return all(c.holds(args) for c in self.when)


@dataclass(frozen=True)
class Forwarding:
    name: str
    spec: Spec  # when no case holds
    reason: str
    cases: tuple[Case, ...] = ()

    def spec_for(self, args: tuple[int, ...]) -> Spec:
        for case in self.cases:
            if case.holds(args):
                return case.spec
        return self.spec

    def specs(self) -> list[Spec]:
        return [*(c.spec for c in self.cases), self.spec]


# --------------------------------------------------------------- the vocabulary


def const(n: int) -> Size:
    return Size(SizeHow.CONST, add=n)


def arg(i: int, mul: int = 1, add: int = 0) -> Size:
    return Size(SizeHow.ARG, i, mul, add)


def fdset(i: int) -> Size:
    return Size(SizeHow.FDSET, i)


def lenptr(i: int) -> Size:
    return Size(SizeHow.LENPTR, i)


V = ArgSpec(Kind.VAL)
PATH = ArgSpec(Kind.PATH)
DROP = ArgSpec(Kind.DROP)
MSG_IN = ArgSpec(Kind.MSG_IN, clamp=True)
MSG_OUT = ArgSpec(Kind.MSG_OUT, clamp=True)


def IN(size: Size | int, clamp: bool = False) -> ArgSpec:
    return ArgSpec(Kind.IN, const(size) if isinstance(size, int) else size, clamp=clamp)


def OUT(size: Size | int, ret: bool = False, clamp: bool = False) -> ArgSpec:
    return ArgSpec(Kind.OUT, const(size) if isinstance(size, int) else size, ret, clamp)


def INOUT(size: Size | int) -> ArgSpec:
    return ArgSpec(Kind.INOUT, const(size) if isinstance(size, int) else size)


def IOV_IN(count_arg: int) -> ArgSpec:
    return ArgSpec(Kind.IOV_IN, arg(count_arg), clamp=True)


def IOV_OUT(count_arg: int) -> ArgSpec:
    return ArgSpec(Kind.IOV_OUT, arg(count_arg), ret_sized=True, clamp=True)


def SOCKADDR_IN(len_arg: int) -> ArgSpec:
    """A socket address and its length (by value)."""
    return IN(arg(len_arg))


def SOCKADDR_OUT(len_arg: int) -> ArgSpec:
    """A socket address the kernel fills; its capacity in the socklen_t at args[len_arg]."""
    return OUT(lenptr(len_arg))


SOCKLEN = INOUT(4)  # the socklen_t of a SOCKADDR_OUT (or getsockopt's optlen)


def home(*args: ArgSpec) -> Spec:
    return Spec(Placement.HOME, args)


def time_(*args: ArgSpec) -> Spec:
    return Spec(Placement.TIME, args)


LOCAL_SPEC = Spec(Placement.LOCAL)
BRING_HOME_SPEC = Spec(Placement.BRING_HOME)
FILE_MAP_SPEC = Spec(Placement.FILE_MAP)
SPLIT_SPEC = Spec(Placement.SPLIT)
NOT_FORWARDED = Spec(Placement.UNFORWARDABLE, error=ENOSYS)
UNKNOWN_IOCTL = Spec(Placement.UNFORWARDABLE, error=ENOTTY)

# Kernel structure sizes on x86-64 (forward_marshal.c checks them with _Static_assert).
STRUCTS: dict[str, tuple[str, int]] = {
    "stat": ("struct stat", 144),
    "statx": ("struct statx", 256),
    "statfs": ("struct statfs", 120),
    "rusage": ("struct rusage", 144),
    "siginfo": ("siginfo_t", 128),
    "flock": ("struct flock", 32),
    "f_owner_ex": ("struct f_owner_ex", 8),
    "winsize": ("struct winsize", 8),
    "timespec": ("struct timespec", 16),
    "timeval": ("struct timeval", 16),
    "timezone": ("struct timezone", 8),
    "itimerspec": ("struct itimerspec", 32),
    "utimbuf": ("struct utimbuf", 16),
    "utsname": ("struct utsname", 390),
    "sysinfo": ("struct sysinfo", 112),
    "rlimit": ("struct rlimit", 16),
    "tms": ("struct tms", 32),
    "epoll_event": ("struct epoll_event", 12),
    "pollfd": ("struct pollfd", 8),
    "open_how": ("struct open_how", 24),
    "msqid_ds": ("struct msqid_ds", 120),
    "shmid_ds": ("struct shmid_ds", 112),
    "semid_ds": ("struct semid_ds", 104),
    "sembuf": ("struct sembuf", 6),
    "mq_attr": ("struct mq_attr", 64),
    "sigevent": ("struct sigevent", 64),
    "ustat": ("struct ustat", 32),
    "cachestat_range": ("struct cachestat_range", 16),
    "cachestat": ("struct cachestat", 40),
    # The kernel's termios (TCGETS), not glibc's 60-byte one; termios2 adds two speeds.
    "termios": ("struct termios (kernel)", 36),
    "termios2": ("struct termios2", 44),
}


def S(name: str) -> int:
    return STRUCTS[name][1]


# ------------------------------------------------------------ ioctl and fcntl

# ioctl requests forwarded home, with what their third argument is.  Anything
# else fails with ENOTTY ("not a terminal / no such request"), which programs
# handle as an unsupported request; a table cannot know what an unknown
# request reads or writes.
IOCTLS: dict[int, tuple[str, ArgSpec]] = {
    0x5401: ("TCGETS", OUT(S("termios"))),
    0x5402: ("TCSETS", IN(S("termios"))),
    0x5403: ("TCSETSW", IN(S("termios"))),
    0x5404: ("TCSETSF", IN(S("termios"))),
    0x5409: ("TCSBRK", V),
    0x540A: ("TCXONC", V),
    0x540B: ("TCFLSH", V),
    0x540C: ("TIOCEXCL", V),
    0x540D: ("TIOCNXCL", V),
    0x540E: ("TIOCSCTTY", V),
    0x540F: ("TIOCGPGRP", OUT(4)),
    0x5410: ("TIOCSPGRP", IN(4)),
    0x5411: ("TIOCOUTQ", OUT(4)),
    0x5412: ("TIOCSTI", IN(1)),
    0x5413: ("TIOCGWINSZ", OUT(S("winsize"))),
    0x5414: ("TIOCSWINSZ", IN(S("winsize"))),
    0x5415: ("TIOCMGET", OUT(4)),
    0x5416: ("TIOCMBIS", IN(4)),
    0x5417: ("TIOCMBIC", IN(4)),
    0x5418: ("TIOCMSET", IN(4)),
    0x541B: ("FIONREAD", OUT(4)),
    0x541D: ("TIOCCONS", V),
    0x5420: ("TIOCPKT", IN(4)),
    0x5421: ("FIONBIO", IN(4)),
    0x5422: ("TIOCNOTTY", V),
    0x5423: ("TIOCSETD", IN(4)),
    0x5424: ("TIOCGETD", OUT(4)),
    0x5425: ("TCSBRKP", V),
    0x5427: ("TIOCSBRK", V),
    0x5428: ("TIOCCBRK", V),
    0x5429: ("TIOCGSID", OUT(4)),
    0x802C542A: ("TCGETS2", OUT(S("termios2"))),
    0x402C542B: ("TCSETS2", IN(S("termios2"))),
    0x402C542C: ("TCSETSW2", IN(S("termios2"))),
    0x402C542D: ("TCSETSF2", IN(S("termios2"))),
    0x80045430: ("TIOCGPTN", OUT(4)),
    0x40045431: ("TIOCSPTLCK", IN(4)),
    0x80045432: ("TIOCGDEV", OUT(4)),
    0x40045436: ("TIOCSIG", V),
    0x5437: ("TIOCVHANGUP", V),
    0x80045438: ("TIOCGPKT", OUT(4)),
    0x80045439: ("TIOCGPTLCK", OUT(4)),
    0x80045440: ("TIOCGEXCL", OUT(4)),
    0x5441: ("TIOCGPTPEER", V),
    0x5450: ("FIONCLEX", V),
    0x5451: ("FIOCLEX", V),
    0x5452: ("FIOASYNC", IN(4)),
    0x5460: ("FIOQSIZE", OUT(8)),
    0x8901: ("FIOSETOWN", IN(4)),
    0x8902: ("SIOCSPGRP", IN(4)),
    0x8903: ("FIOGETOWN", OUT(4)),
    0x8904: ("SIOCGPGRP", OUT(4)),
    0x8905: ("SIOCATMARK", OUT(4)),
    0x80086601: ("FS_IOC_GETFLAGS", OUT(4)),  # declared long, the kernel moves an int
    0x40086602: ("FS_IOC_SETFLAGS", IN(4)),
    0x40049409: ("FICLONE", V),  # cp --reflink: the argument is a descriptor
}

FLOCK = INOUT(S("flock"))
FCNTLS: dict[int, tuple[str, ArgSpec]] = {
    5: ("F_GETLK", FLOCK),
    6: ("F_SETLK", FLOCK),
    7: ("F_SETLKW", FLOCK),
    36: ("F_OFD_GETLK", FLOCK),
    37: ("F_OFD_SETLK", FLOCK),
    38: ("F_OFD_SETLKW", FLOCK),
    15: ("F_SETOWN_EX", IN(S("f_owner_ex"))),
    16: ("F_GETOWN_EX", OUT(S("f_owner_ex"))),
    1035: ("F_GET_RW_HINT", OUT(8)),
    1036: ("F_SET_RW_HINT", IN(8)),
    1037: ("F_GET_FILE_RW_HINT", OUT(8)),
    1038: ("F_SET_FILE_RW_HINT", IN(8)),
}

MAP_ANONYMOUS = 0x20
RUSAGE_CHILDREN = -1
TIMER_ABSTIME = 1
IPC_64_MASK = LOW_BITS & ~0x100  # the IPC_64 flag in a SysV ctl command changes nothing here
IPC_RMID, IPC_SET, IPC_STAT = 0, 1, 2
# Clocks that tell the time of the node (forwarded with -t unset); the CPU-time clocks
# (process, thread, a pid's) belong to the running copy and are read locally.
NODE_CLOCKS = {
    0: "CLOCK_REALTIME",
    1: "CLOCK_MONOTONIC",
    4: "CLOCK_MONOTONIC_RAW",
    5: "CLOCK_REALTIME_COARSE",
    6: "CLOCK_MONOTONIC_COARSE",
    7: "CLOCK_BOOTTIME",
    8: "CLOCK_REALTIME_ALARM",
    9: "CLOCK_BOOTTIME_ALARM",
    11: "CLOCK_TAI",
}


def on_int(index: int, value: int, mask: int = LOW_BITS) -> Arg:
    return Arg(index, value & mask, mask)


def _request_cases(index: int, table: dict[int, tuple[str, ArgSpec]], before: int) -> tuple:
    """One case per request: ``before`` value arguments, then the request's argument."""
    return tuple(
        Case((on_int(index, value),), home(*(V,) * before, spec), name)
        for value, (name, spec) in table.items()
    )


def _clock_cases(
    index: int, spec: Spec, extra: tuple[Arg, ...] = (), suffix: str = ""
) -> tuple[Case, ...]:
    return tuple(
        Case((on_int(index, clock), *extra), spec, name + suffix)
        for clock, name in NODE_CLOCKS.items()
    )


def _ipc_cases(index: int, struct: str, before: int) -> tuple[Case, ...]:
    size = S(struct)
    return (
        Case((on_int(index, IPC_RMID, IPC_64_MASK),), home(*(V,) * (before + 1)), "IPC_RMID"),
        Case((on_int(index, IPC_SET, IPC_64_MASK),), home(*(V,) * before, IN(size)), "IPC_SET"),
        Case((on_int(index, IPC_STAT, IPC_64_MASK),), home(*(V,) * before, OUT(size)), "IPC_STAT"),
    )


# ------------------------------------------------------------------ the table

R_LOCAL_MEM = "the process's own memory, carried with it"
R_LOCAL_SIG = "the process's own signal state and handlers, carried with it"
R_LOCAL_CPU = "pure CPU or per-thread kernel state of the running copy"
R_LOCAL_SLEEP = "sleeps or waits for the running copy's own signals and timers"
R_LOCAL_TIMER = "per-process timer of the running copy (a checkpoint carries it)"
R_REFUSED = "refused by the discipline (the base filter decides, as at home)"
R_FD = "I/O on a descriptor: descriptors live at home"
R_PATH = "file-system call by path, relative to the home cwd"
R_NET = "socket call: sockets live at home"
R_ID = "process identity or credentials: the home process keeps them"
R_CHILD = "children and their status live at home"
R_SIG_HOME = "signals another process, or itself, by its home pid"
R_QUERY_HOME = "a migrated process sees its home node"
R_IPC = "System V IPC or POSIX message queue: the object lives at home"
R_TIME = "reads a clock: home's unless -t"
R_BRING = "creates or replaces the process: it is brought home and the call runs there"
R_PINNED = (
    "pins the process to its node (policy: pinned): it is brought home and the call runs there"
)
R_LOCAL_QUERY = "read-only query about the running copy itself"
R_NESTED = (
    "a structure that holds further pointers or its own size (the table cannot marshal it): ENOSYS"
)

_LOCAL = {
    R_LOCAL_MEM: "mprotect munmap brk mremap msync mincore madvise shmdt membarrier mseal "
    "futex set_robust_list get_robust_list rseq futex_waitv futex_wake futex_wait "
    "futex_requeue set_tid_address munlock munlockall",
    R_LOCAL_SIG: "rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending sigaltstack "
    "restart_syscall",
    R_LOCAL_CPU: "sched_yield arch_prctl prctl getrandom sched_getaffinity sched_getparam "
    "sched_getscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval "
    "sched_getattr getcpu getpriority setpriority seccomp uretprobe lsm_get_self_attr "
    "lsm_list_modules sysfs exit exit_group",
    R_LOCAL_QUERY: "capget get_mempolicy",
    R_LOCAL_SLEEP: "pause nanosleep rt_sigtimedwait rt_sigsuspend",
    R_LOCAL_TIMER: "getitimer alarm setitimer timer_create timer_settime timer_gettime "
    "timer_getoverrun timer_delete",
}

_HOME: dict[str, tuple[str, Spec]] = {
    # descriptors
    "read": (R_FD, home(V, OUT(arg(2), ret=True, clamp=True), V)),
    "write": (R_FD, home(V, IN(arg(2), clamp=True), V)),
    "close": (R_FD, home(V)),
    "fstat": (R_FD, home(V, OUT(S("stat")))),
    "poll": (R_FD, home(INOUT(arg(1, S("pollfd"))), V, V)),
    "lseek": (R_FD, home(V, V, V)),
    "pread64": (R_FD, home(V, OUT(arg(2), ret=True, clamp=True), V, V)),
    "pwrite64": (R_FD, home(V, IN(arg(2), clamp=True), V, V)),
    "readv": (R_FD, home(V, IOV_OUT(2), V)),
    "writev": (R_FD, home(V, IOV_IN(2), V)),
    "preadv": (R_FD, home(V, IOV_OUT(2), V, V, V)),
    "pwritev": (R_FD, home(V, IOV_IN(2), V, V, V)),
    "preadv2": (R_FD, home(V, IOV_OUT(2), V, V, V, V)),
    "pwritev2": (R_FD, home(V, IOV_IN(2), V, V, V, V)),
    "pipe": (R_FD, home(OUT(8))),
    "pipe2": (R_FD, home(OUT(8), V)),
    "select": (R_FD, home(V, *(INOUT(fdset(0)),) * 3, INOUT(S("timeval")))),
    # The signal mask is for the remote's own signals: dropped (the deputy's does not matter).
    "pselect6": (R_FD, home(V, *(INOUT(fdset(0)),) * 3, INOUT(S("timespec")), DROP)),
    "ppoll": (R_FD, home(INOUT(arg(1, S("pollfd"))), V, INOUT(S("timespec")), DROP, V)),
    "dup": (R_FD, home(V)),
    "dup2": (R_FD, home(V, V)),
    "dup3": (R_FD, home(V, V, V)),
    "sendfile": (R_FD, home(V, V, INOUT(8), V)),
    "flock": (R_FD, home(V, V)),
    "fsync": (R_FD, home(V)),
    "fdatasync": (R_FD, home(V)),
    "ftruncate": (R_FD, home(V, V)),
    "getdents": (R_FD, home(V, OUT(arg(2), ret=True, clamp=True), V)),
    "getdents64": (R_FD, home(V, OUT(arg(2), ret=True, clamp=True), V)),
    "fchdir": (R_FD, home(V)),
    "fchmod": (R_FD, home(V, V)),
    "fchown": (R_FD, home(V, V, V)),
    "fstatfs": (R_FD, home(V, OUT(S("statfs")))),
    "readahead": (R_FD, home(V, V, V)),
    "fsetxattr": (R_FD, home(V, PATH, IN(arg(3)), V, V)),
    "fgetxattr": (R_FD, home(V, PATH, OUT(arg(3), ret=True), V)),
    "flistxattr": (R_FD, home(V, OUT(arg(2), ret=True), V)),
    "fremovexattr": (R_FD, home(V, PATH)),
    "fadvise64": (R_FD, home(V, V, V, V)),
    "splice": (R_FD, home(V, INOUT(8), V, INOUT(8), V, V)),
    "tee": (R_FD, home(V, V, V, V)),
    "sync_file_range": (R_FD, home(V, V, V, V)),
    "fallocate": (R_FD, home(V, V, V, V)),
    "syncfs": (R_FD, home(V)),
    "copy_file_range": (R_FD, home(V, INOUT(8), V, INOUT(8), V, V)),
    "close_range": (R_FD, home(V, V, V)),
    "cachestat": (R_FD, home(V, IN(S("cachestat_range")), OUT(S("cachestat")), V)),
    "epoll_create": (R_FD, home(V)),
    "epoll_create1": (R_FD, home(V)),
    "epoll_ctl": (R_FD, home(V, V, V, IN(S("epoll_event")))),
    "epoll_wait": (R_FD, home(V, OUT(arg(2, S("epoll_event")), ret=True), V, V)),
    "epoll_pwait": (R_FD, home(V, OUT(arg(2, S("epoll_event")), ret=True), V, V, DROP, V)),
    "epoll_pwait2": (
        R_FD,
        home(V, OUT(arg(2, S("epoll_event")), ret=True), V, IN(S("timespec")), DROP, V),
    ),
    "eventfd": (R_FD, home(V)),
    "eventfd2": (R_FD, home(V, V)),
    "signalfd": (R_FD, home(V, IN(arg(2)), V)),
    "signalfd4": (R_FD, home(V, IN(arg(2)), V, V)),
    "timerfd_create": (R_FD, home(V, V)),
    "timerfd_settime": (R_FD, home(V, V, IN(S("itimerspec")), OUT(S("itimerspec")))),
    "timerfd_gettime": (R_FD, home(V, OUT(S("itimerspec")))),
    "inotify_init": (R_FD, home()),
    "inotify_init1": (R_FD, home(V)),
    "inotify_add_watch": (R_FD, home(V, PATH, V)),
    "inotify_rm_watch": (R_FD, home(V, V)),
    "memfd_create": (R_FD, home(PATH, V)),
    # paths
    "open": (R_PATH, home(PATH, V, V)),
    "openat": (R_PATH, home(V, PATH, V, V)),
    "openat2": (R_PATH, home(V, PATH, IN(arg(3)), V)),
    "creat": (R_PATH, home(PATH, V)),
    "stat": (R_PATH, home(PATH, OUT(S("stat")))),
    "lstat": (R_PATH, home(PATH, OUT(S("stat")))),
    "newfstatat": (R_PATH, home(V, PATH, OUT(S("stat")), V)),
    "statx": (R_PATH, home(V, PATH, V, V, OUT(S("statx")))),
    "statfs": (R_PATH, home(PATH, OUT(S("statfs")))),
    "ustat": (R_PATH, home(V, OUT(S("ustat")))),
    "access": (R_PATH, home(PATH, V)),
    "faccessat": (R_PATH, home(V, PATH, V)),
    "faccessat2": (R_PATH, home(V, PATH, V, V)),
    "truncate": (R_PATH, home(PATH, V)),
    "getcwd": (R_PATH, home(OUT(arg(1), ret=True), V)),
    "chdir": (R_PATH, home(PATH)),
    "rename": (R_PATH, home(PATH, PATH)),
    "renameat": (R_PATH, home(V, PATH, V, PATH)),
    "renameat2": (R_PATH, home(V, PATH, V, PATH, V)),
    "mkdir": (R_PATH, home(PATH, V)),
    "mkdirat": (R_PATH, home(V, PATH, V)),
    "rmdir": (R_PATH, home(PATH)),
    "link": (R_PATH, home(PATH, PATH)),
    "linkat": (R_PATH, home(V, PATH, V, PATH, V)),
    "unlink": (R_PATH, home(PATH)),
    "unlinkat": (R_PATH, home(V, PATH, V)),
    "symlink": (R_PATH, home(PATH, PATH)),
    "symlinkat": (R_PATH, home(PATH, V, PATH)),
    "readlink": (R_PATH, home(PATH, OUT(arg(2), ret=True), V)),
    "readlinkat": (R_PATH, home(V, PATH, OUT(arg(3), ret=True), V)),
    "chmod": (R_PATH, home(PATH, V)),
    "fchmodat": (R_PATH, home(V, PATH, V)),
    "fchmodat2": (R_PATH, home(V, PATH, V, V)),
    "chown": (R_PATH, home(PATH, V, V)),
    "lchown": (R_PATH, home(PATH, V, V)),
    "fchownat": (R_PATH, home(V, PATH, V, V, V)),
    "mknod": (R_PATH, home(PATH, V, V)),
    "mknodat": (R_PATH, home(V, PATH, V, V)),
    "umask": (R_PATH, home(V)),
    "sync": (R_PATH, home()),
    "utime": (R_PATH, home(PATH, IN(S("utimbuf")))),
    "utimes": (R_PATH, home(PATH, IN(2 * S("timeval")))),
    "futimesat": (R_PATH, home(V, PATH, IN(2 * S("timeval")))),
    "utimensat": (R_PATH, home(V, PATH, IN(2 * S("timespec")), V)),
    "setxattr": (R_PATH, home(PATH, PATH, IN(arg(3)), V, V)),
    "lsetxattr": (R_PATH, home(PATH, PATH, IN(arg(3)), V, V)),
    "getxattr": (R_PATH, home(PATH, PATH, OUT(arg(3), ret=True), V)),
    "lgetxattr": (R_PATH, home(PATH, PATH, OUT(arg(3), ret=True), V)),
    "listxattr": (R_PATH, home(PATH, OUT(arg(2), ret=True), V)),
    "llistxattr": (R_PATH, home(PATH, OUT(arg(2), ret=True), V)),
    "removexattr": (R_PATH, home(PATH, PATH)),
    "lremovexattr": (R_PATH, home(PATH, PATH)),
    "listxattrat": (R_PATH, home(V, PATH, V, OUT(arg(4), ret=True), V)),
    "removexattrat": (R_PATH, home(V, PATH, V, PATH)),
    "file_getattr": (R_PATH, home(V, PATH, OUT(arg(3)), V, V)),
    "file_setattr": (R_PATH, home(V, PATH, IN(arg(3)), V, V)),
    # sockets
    "socket": (R_NET, home(V, V, V)),
    "socketpair": (R_NET, home(V, V, V, OUT(8))),
    "connect": (R_NET, home(V, SOCKADDR_IN(2), V)),
    "bind": (R_NET, home(V, SOCKADDR_IN(2), V)),
    "listen": (R_NET, home(V, V)),
    "accept": (R_NET, home(V, SOCKADDR_OUT(2), SOCKLEN)),
    "accept4": (R_NET, home(V, SOCKADDR_OUT(2), SOCKLEN, V)),
    "getsockname": (R_NET, home(V, SOCKADDR_OUT(2), SOCKLEN)),
    "getpeername": (R_NET, home(V, SOCKADDR_OUT(2), SOCKLEN)),
    "sendto": (R_NET, home(V, IN(arg(2), clamp=True), V, V, SOCKADDR_IN(5), V)),
    "recvfrom": (
        R_NET,
        home(V, OUT(arg(2), ret=True, clamp=True), V, V, SOCKADDR_OUT(5), SOCKLEN),
    ),
    # Control data (SCM_RIGHTS, SCM_CREDENTIALS) is forwarded as bytes: the descriptors and
    # pids in it are home ones, which is what the process uses.
    "sendmsg": (R_NET, home(V, MSG_IN, V)),
    "recvmsg": (R_NET, home(V, MSG_OUT, V)),
    "shutdown": (R_NET, home(V, V)),
    "setsockopt": (R_NET, home(V, V, V, IN(arg(4)), V)),
    "getsockopt": (R_NET, home(V, V, V, OUT(lenptr(4)), SOCKLEN)),
    # identity
    "getpid": (R_ID, home()),
    "gettid": (R_ID, home()),  # a single-threaded process: its home pid
    "getppid": (R_ID, home()),
    "getuid": (R_ID, home()),
    "geteuid": (R_ID, home()),
    "getgid": (R_ID, home()),
    "getegid": (R_ID, home()),
    "setuid": (R_ID, home(V)),
    "setgid": (R_ID, home(V)),
    "setreuid": (R_ID, home(V, V)),
    "setregid": (R_ID, home(V, V)),
    "setresuid": (R_ID, home(V, V, V)),
    "setresgid": (R_ID, home(V, V, V)),
    "getresuid": (R_ID, home(OUT(4), OUT(4), OUT(4))),
    "getresgid": (R_ID, home(OUT(4), OUT(4), OUT(4))),
    "setfsuid": (R_ID, home(V)),
    "setfsgid": (R_ID, home(V)),
    "getgroups": (R_ID, home(V, OUT(arg(0, 4), ret=True))),
    "setgroups": (R_ID, home(V, IN(arg(0, 4)))),
    "setpgid": (R_ID, home(V, V)),
    "getpgid": (R_ID, home(V)),
    "getpgrp": (R_ID, home()),
    "setsid": (R_ID, home()),
    "getsid": (R_ID, home(V)),
    "getrlimit": (R_ID, home(V, OUT(S("rlimit")))),
    "setrlimit": (R_ID, home(V, IN(S("rlimit")))),
    "prlimit64": (R_ID, home(V, V, IN(S("rlimit")), OUT(S("rlimit")))),
    "pidfd_open": (R_ID, home(V, V)),
    # children and signals
    "waitid": (R_CHILD, home(V, V, OUT(S("siginfo")), V, OUT(S("rusage")))),
    "times": (R_CHILD, home(OUT(S("tms")))),
    "kill": (R_SIG_HOME, home(V, V)),
    "tkill": (R_SIG_HOME, home(V, V)),
    "tgkill": (R_SIG_HOME, home(V, V, V)),
    "rt_sigqueueinfo": (R_SIG_HOME, home(V, V, IN(S("siginfo")))),
    "rt_tgsigqueueinfo": (R_SIG_HOME, home(V, V, V, IN(S("siginfo")))),
    "pidfd_send_signal": (R_SIG_HOME, home(V, V, IN(S("siginfo")), V)),
    # the node as the process sees it
    "uname": (R_QUERY_HOME, home(OUT(S("utsname")))),
    "sysinfo": (R_QUERY_HOME, home(OUT(S("sysinfo")))),
    # System V IPC and POSIX message queues
    "shmget": (R_IPC, home(V, V, V)),
    "semget": (R_IPC, home(V, V, V)),
    "semop": (R_IPC, home(V, IN(arg(2, S("sembuf"))), V)),
    "msgget": (R_IPC, home(V, V)),
    "msgsnd": (R_IPC, home(V, IN(arg(2, add=8)), V, V)),
    "msgrcv": (R_IPC, home(V, OUT(arg(2, add=8)), V, V, V)),
    "mq_open": (R_IPC, home(PATH, V, V, IN(S("mq_attr")))),
    "mq_unlink": (R_IPC, home(PATH)),
    "mq_timedsend": (R_IPC, home(V, IN(arg(2)), V, V, IN(S("timespec")))),
    "mq_timedreceive": (R_IPC, home(V, OUT(arg(2), ret=True), V, OUT(4), IN(S("timespec")))),
    "mq_notify": (R_IPC, home(V, IN(S("sigevent")))),
    "mq_getsetattr": (R_IPC, home(V, IN(S("mq_attr")), OUT(S("mq_attr")))),
}

_SPECIAL: tuple[Forwarding, ...] = (
    Forwarding(
        "sendmmsg",
        SPLIT_SPEC,
        "sockets stay at home; one forwarded sendmsg per message (glibc's resolver uses it)",
    ),
    Forwarding(
        "recvmmsg",
        SPLIT_SPEC,
        "sockets stay at home; one forwarded recvmsg per message (the timeout is not applied)",
    ),
    Forwarding(
        "mmap",
        FILE_MAP_SPEC,
        "anonymous memory is the process's own; a file mapping is the supervisor's to make",
        (Case((Arg(3, MAP_ANONYMOUS, MAP_ANONYMOUS),), LOCAL_SPEC, "MAP_ANONYMOUS"),),
    ),
    Forwarding(
        "ioctl",
        UNKNOWN_IOCTL,
        "the terminal and descriptors live at home; only requests whose argument the table "
        "knows are forwarded, others fail with ENOTTY",
        _request_cases(1, IOCTLS, 2),
    ),
    Forwarding(
        "fcntl",
        home(V, V, V),
        "descriptors live at home; locks and owners take a structure",
        _request_cases(1, FCNTLS, 2),
    ),
    Forwarding(
        "getrusage",
        LOCAL_SPEC,
        "the running copy's own CPU use is local; its children's is at home",
        (
            Case(
                (on_int(0, RUSAGE_CHILDREN),),
                home(V, OUT(S("rusage"))),
                "RUSAGE_CHILDREN",
            ),
        ),
    ),
    Forwarding(
        "clock_gettime",
        LOCAL_SPEC,
        R_TIME + "; CPU-time clocks are the running copy's",
        _clock_cases(0, time_(V, OUT(S("timespec")))),
    ),
    Forwarding(
        "clock_getres",
        LOCAL_SPEC,
        R_TIME + "; CPU-time clocks are the running copy's",
        _clock_cases(0, time_(V, OUT(S("timespec")))),
    ),
    Forwarding(
        "clock_nanosleep",
        LOCAL_SPEC,
        "a relative sleep is local; an absolute deadline is on home's clock unless -t",
        _clock_cases(
            0,
            time_(V, V, IN(S("timespec")), OUT(S("timespec"))),
            (Arg(1, TIMER_ABSTIME, TIMER_ABSTIME),),
            " with TIMER_ABSTIME",
        ),
    ),
    Forwarding("gettimeofday", time_(OUT(S("timeval")), OUT(S("timezone"))), R_TIME),
    Forwarding("time", time_(OUT(8)), R_TIME),
    Forwarding(
        "shmctl",
        NOT_FORWARDED,
        R_IPC + "; other commands than these: ENOSYS",
        _ipc_cases(1, "shmid_ds", 2),
    ),
    Forwarding(
        "msgctl",
        NOT_FORWARDED,
        R_IPC + "; other commands than these: ENOSYS",
        _ipc_cases(1, "msqid_ds", 2),
    ),
    Forwarding(
        "semctl",
        NOT_FORWARDED,
        R_IPC + "; the array commands (GETALL, SETALL) and the info ones: ENOSYS",
        (
            *_ipc_cases(2, "semid_ds", 3),
            *(
                Case((on_int(2, cmd, IPC_64_MASK),), home(V, V, V, V), name)
                for cmd, name in (
                    (11, "GETPID"),
                    (12, "GETVAL"),
                    (14, "GETNCNT"),
                    (15, "GETZCNT"),
                    (16, "SETVAL"),
                )
            ),
        ),
    ),
)

R_CAPTURE = (
    "; a thread is made where the process runs (it moves with it)"
    "; the checkpointer's frozen copy (clone without an exit signal or stack, reaped by "
    "wait4 with __WCLONE) is made and reaped where the process runs: that is how it comes home"
)
__WCLONE = 0x80000000

_CAPTURE: tuple[Forwarding, ...] = (
    Forwarding(
        "clone",
        BRING_HOME_SPEC,
        R_BRING + R_CAPTURE,
        (
            Case((Arg(0, 0, ALL_BITS), Arg(1, 0)), LOCAL_SPEC, "checkpointer's copy"),
            Case(
                (Arg(0, CLONE_A_THREAD, CLONE_A_THREAD | CLONE_NEW_NAMESPACES),),
                LOCAL_SPEC,
                "a thread",
            ),
        ),
    ),
    Forwarding(
        "wait4",
        home(V, OUT(4), V, OUT(S("rusage"))),
        R_CHILD + R_CAPTURE,
        (Case((Arg(2, __WCLONE, __WCLONE),), LOCAL_SPEC, "__WCLONE: checkpointer's copy"),),
    ),
)

_BRING_HOME = "fork vfork clone3 execve execveat"

_UNFORWARDABLE = {
    R_NESTED: "name_to_handle_at statmount listmount setxattrat getxattrat",
    "a restriction the deputy, which performs the file calls, would not obey: ENOSYS "
    "(programs treat it as no Landlock)": "landlock_create_ruleset landlock_add_rule "
    "landlock_restrict_self",
}


# The calls the kernel ends with EINTR whenever a signal handler runs, SA_RESTART
# or not (signal(7), "never restarted"; ERESTARTNOHAND or a plain EINTR); every
# other call interrupted at home is made again after a handler with SA_RESTART.
# A copy away answers an interrupted home call by these (fwd_restarts_after_handler).
_EINTR_AFTER_ANY_HANDLER = (
    "poll ppoll select pselect6 epoll_wait epoll_pwait epoll_pwait2 msgrcv msgsnd semop "
    "semtimedop io_getevents io_pgetevents nanosleep clock_nanosleep pause rt_sigsuspend "
    "rt_sigtimedwait"
)
EINTR_AFTER_ANY_HANDLER = frozenset(_EINTR_AFTER_ANY_HANDLER.split())


def refused_by_policy(name: str) -> bool:
    """True when the discipline refuses every form of the call (no rule allows it)."""
    return BY_NAME[name].decision.policy.value in ("unsupported", "enosys")


def pins_or_refuses(decision: Decision) -> bool:
    """Whether every form of the call is pinned or refused (it is never carried away)."""
    if decision.policy is Policy.PINNED:
        return True
    outcomes = {rule.then for rule in decision.rules} | {decision.otherwise}
    return decision.policy is Policy.LIMITED and outcomes <= {Outcome.PIN, Outcome.UNSUPPORTED}


def _build() -> dict[str, Forwarding]:
    table: dict[str, Forwarding] = {}

    def add(entry: Forwarding) -> None:
        if entry.name in table:
            raise ValueError(f"{entry.name} twice in the forwarding table")
        table[entry.name] = entry

    for reason, names in _LOCAL.items():
        for name in names.split():
            add(Forwarding(name, LOCAL_SPEC, reason))
    for name, (reason, spec) in _HOME.items():
        add(Forwarding(name, spec, reason))
    for entry in (*_SPECIAL, *_CAPTURE):
        add(entry)
    for name in _BRING_HOME.split():
        add(Forwarding(name, BRING_HOME_SPEC, R_BRING))
    for reason, names in _UNFORWARDABLE.items():
        for name in names.split():
            add(Forwarding(name, NOT_FORWARDED, reason))
    # Everything the discipline pins or refuses outright: home first, or the base filter decides.
    for s in SYSCALLS:
        if s.name not in table and pins_or_refuses(s.decision):
            add(Forwarding(s.name, BRING_HOME_SPEC, R_PINNED))
        elif s.name not in table:
            if not refused_by_policy(s.name):
                raise ValueError(f"{s.name} has no forwarding decision")
            add(Forwarding(s.name, LOCAL_SPEC, R_REFUSED))
    return table


FORWARDING: dict[str, Forwarding] = _build()
if not FORWARDING.keys() >= EINTR_AFTER_ANY_HANDLER:
    raise ValueError(f"not syscalls: {sorted(EINTR_AFTER_ANY_HANDLER - FORWARDING.keys())}")


def placement(name: str, args: tuple[int, ...] = (0,) * 6) -> Placement:
    """Where call ``name`` with ``args`` runs on a remote node (``fwd_placement`` in C)."""
    return FORWARDING[name].spec_for(args).placement
