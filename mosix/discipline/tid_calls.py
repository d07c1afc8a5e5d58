"""The calls that take a thread id from the program, translated after a recovery or a move.

A process recovered with ``mosrun -R``, or moved to another node or home, keeps,
in each thread's control block, the thread ids of its image (glibc's cached tid:
the owner its held mutexes name), while the kernel gave its threads new ones.
The restorer installs a filter (csrc/restore/restore_tids.c) that traps, from
libc's text, the calls below when the named argument is one of the image's
thread ids, and ``gettid``, ``rt_sigprocmask`` (so that libc's "block every
signal" never blocks the trap's SIGSYS) and ``timer_create`` (a SIGEV_THREAD_ID
target); the preload shim's handler (csrc/shim/shim_tids.c) makes each with the
kernel's ids.  Generated into ``csrc/generated/seccomp_table.h``.
"""

from __future__ import annotations

from dataclasses import dataclass

TID_TRAP_MAGIC = 0x4D54  # SECCOMP_RET_DATA (si_errno) of the restorer's tid traps: 'MT'


@dataclass(frozen=True)
class TidCall:
    """``name`` takes a thread id in argument ``tid``; ``tgid``: the process id
    argument, translated when it is the image's process id; ``which``: only when
    argument 0 is this value (get/setpriority's PRIO_PROCESS, ioprio's
    IOPRIO_WHO_PROCESS: otherwise the argument is a group or a user)."""

    name: str
    tid: int
    tgid: int | None = None
    which: int | None = None


TID_CALLS: tuple[TidCall, ...] = (
    TidCall("tkill", 0),
    TidCall("tgkill", 1, tgid=0),
    TidCall("rt_tgsigqueueinfo", 1, tgid=0),
    TidCall("sched_setparam", 0),
    TidCall("sched_getparam", 0),
    TidCall("sched_setscheduler", 0),
    TidCall("sched_getscheduler", 0),
    TidCall("sched_rr_get_interval", 0),
    TidCall("sched_setaffinity", 0),
    TidCall("sched_getaffinity", 0),
    TidCall("sched_setattr", 0),
    TidCall("sched_getattr", 0),
    TidCall("get_robust_list", 0),
    TidCall("getpriority", 1, which=0),  # PRIO_PROCESS: a thread's nice value
    TidCall("setpriority", 1, which=0),
    TidCall("ioprio_get", 1, which=1),  # IOPRIO_WHO_PROCESS
    TidCall("ioprio_set", 1, which=1),
)

# Trapped whatever their arguments (the handler decides).
TID_ALWAYS: tuple[str, ...] = ("gettid", "rt_sigprocmask", "timer_create")
