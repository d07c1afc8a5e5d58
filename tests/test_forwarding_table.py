"""The forwarding table and the forward filter generated from it (no processes)."""

from __future__ import annotations

import signal

import pytest
from discipline_helpers import REPO

from mosix.discipline import bpf, forward_filter
from mosix.discipline.forward_codegen import remote_text
from mosix.discipline.forwarding import (
    FCNTLS,
    FORWARDING,
    FWD_MAX_DATA,
    INPUT_KINDS,
    IOCTLS,
    OUTPUT_KINDS,
    POINTER_KINDS,
    ArgSpec,
    Kind,
    Placement,
    SizeHow,
    Spec,
    placement,
)
from mosix.discipline.policy import BY_NAME, SYSCALLS, Outcome, Policy

PROGRAM = forward_filter.program()
FAST_PROGRAM = forward_filter.program(fast=True)
ELSEWHERE = 0x5555_5555_1000  # an instruction pointer in the program's text
RESTORER_IP = 0x2000_0000_1000
MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS = 0x2, 0x1, 0x20
PROT_READ, PROT_WRITE = 0x1, 0x2


def words(text: str) -> list[str]:
    return text.split()


# What glibc, coreutils, bash, python3 and a stdio C program commonly call.
COMMON = words("""read write open openat close close_range lseek pread64 pwrite64 readv writev
access
faccessat faccessat2 newfstatat fstat stat lstat statx getdents64 getcwd chdir fchdir mkdir mkdirat
rmdir unlink unlinkat rename renameat renameat2 link symlink readlink readlinkat chmod fchmod
fchmodat chown fchown lchown fchownat truncate ftruncate fsync fdatasync fallocate dup dup2 dup3
fcntl ioctl pipe pipe2 poll ppoll select pselect6 epoll_create1 epoll_ctl epoll_wait epoll_pwait
socket socketpair connect bind listen accept accept4 getsockname getpeername sendto recvfrom
sendmsg recvmsg setsockopt getsockopt shutdown getpid getppid gettid getuid geteuid getgid getegid
getgroups getresuid getresgid setuid setgid setsid setpgid getpgid getpgrp getsid umask uname
sysinfo getrlimit setrlimit prlimit64 kill tgkill tkill wait4 waitid times utimensat futimesat
utime utimes sendfile copy_file_range eventfd2 timerfd_create timerfd_settime timerfd_gettime
inotify_init1 inotify_add_watch inotify_rm_watch signalfd4""")
EXPECTED = {
    Placement.LOCAL: """futex exit exit_group rt_sigreturn nanosleep sched_yield getrandom
    arch_prctl set_robust_list rseq madvise mprotect munmap brk mremap rt_sigaction
    rt_sigprocmask sigaltstack sched_getaffinity clock_nanosleep getrusage""",
    Placement.HOME: "getpid gettid getppid uname setsid wait4 waitid umask chdir kill tgkill",
    Placement.TIME: "gettimeofday clock_gettime time clock_getres",
    Placement.BRING_HOME: "fork vfork clone clone3 execve execveat",
}
REQUIRED_IOCTLS = words("""TCGETS TCSETS TCSETSW TCSETSF TIOCGWINSZ TIOCSWINSZ TIOCGPGRP TIOCSPGRP
FIONREAD FIONBIO TIOCGSID TIOCSCTTY""")


def marshalled() -> list[tuple[str, Spec]]:
    return [
        (name, spec)
        for name, f in FORWARDING.items()
        for spec in f.specs()
        if spec.placement in (Placement.HOME, Placement.TIME)
    ]


def test_every_syscall_has_exactly_one_decision() -> None:
    assert set(FORWARDING) == {s.name for s in SYSCALLS}
    for name, f in FORWARDING.items():
        assert f.reason.strip(), name


@pytest.mark.parametrize("name", COMMON)
def test_common_calls_go_home_with_every_argument_described(name: str) -> None:
    spec = FORWARDING[name].spec
    specs = FORWARDING[name].specs()
    assert any(s.placement is Placement.HOME for s in specs), name
    if name != "ioctl":
        assert spec.placement is Placement.HOME, name


@pytest.mark.parametrize(
    ("where", "name"), [(p, n) for p, ns in EXPECTED.items() for n in ns.split()]
)
def test_placements_of_note(where: Placement, name: str) -> None:
    fork_like = (signal.SIGCHLD.value, 0, 0, 0, 0, 0)  # clone as fork() makes it
    assert placement(name, fork_like if name == "clone" else (0,) * 6) is where, name


def test_the_checkpointers_copy_is_made_and_reaped_where_the_process_runs() -> None:
    assert placement("clone", (0, 0, 0, 0, 0, 0)) is Placement.LOCAL  # no exit signal, no stack
    assert placement("clone", (0, 4096, 0, 0, 0, 0)) is Placement.BRING_HOME
    assert placement("wait4", (5, 0, 0x80000000 | 1, 0, 0, 0)) is Placement.LOCAL  # __WCLONE
    assert placement("wait4", (5, 0, 1, 0, 0, 0)) is Placement.HOME


def test_mmap_anonymous_is_local_and_a_file_map_is_not() -> None:
    assert placement("mmap", (0, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS, 2**64 - 1, 0)) is (
        Placement.LOCAL
    )
    assert placement("mmap", (0, 4096, 1, MAP_PRIVATE, 3, 0)) is Placement.FILE_MAP


def test_clocks_of_the_node_go_home_and_cpu_clocks_stay() -> None:
    assert placement("clock_gettime", (1, 0, 0, 0, 0, 0)) is Placement.TIME
    assert placement("clock_gettime", (2, 0, 0, 0, 0, 0)) is Placement.LOCAL  # process CPU
    assert placement("clock_nanosleep", (1, 0, 0, 0, 0, 0)) is Placement.LOCAL  # relative
    assert placement("clock_nanosleep", (1, 1, 0, 0, 0, 0)) is Placement.TIME  # TIMER_ABSTIME
    assert placement("getrusage", (2**64 - 1, 0, 0, 0, 0, 0)) is Placement.HOME  # children


def _check_arg(name: str, spec: Spec, i: int, a: ArgSpec) -> None:
    size = a.size
    if a.kind in (Kind.VAL, Kind.PATH, Kind.DROP, Kind.MSG_IN, Kind.MSG_OUT):
        assert size.how is SizeHow.NONE, (name, i)
    else:
        assert size.how is not SizeHow.NONE, (name, i)
    if size.how is SizeHow.CONST:
        assert 0 < size.add <= FWD_MAX_DATA, (name, i)
    if size.how in (SizeHow.ARG, SizeHow.FDSET, SizeHow.LENPTR):
        assert size.arg < len(spec.args) and size.arg != i, (name, i)
        source = spec.args[size.arg]
        if size.how is SizeHow.LENPTR:  # a socklen_t the call reads and writes
            assert source.kind is Kind.INOUT and source.size.add == 4, (name, i)
            assert source.size.how is SizeHow.CONST, (name, i)
        else:
            assert source.kind is Kind.VAL, (name, i)
    if a.ret_sized:
        assert a.kind in (Kind.OUT, Kind.IOV_OUT), (name, i)
        assert a.size.how is SizeHow.ARG or a.kind is Kind.IOV_OUT, (name, i)
    if a.clamp:
        assert a.kind in (Kind.IN, Kind.OUT, Kind.IOV_IN, Kind.IOV_OUT, Kind.MSG_IN, Kind.MSG_OUT)
        assert a.kind in (Kind.MSG_IN, Kind.MSG_OUT) or a.size.how is SizeHow.ARG, (name, i)


@pytest.mark.parametrize(("name", "spec"), marshalled(), ids=lambda v: getattr(v, "name", v))
def test_marshalled_calls_are_consistent(name: str, spec: Spec) -> None:
    assert 0 <= len(spec.args) <= 6
    for i, a in enumerate(spec.args):
        _check_arg(name, spec, i, a)
    vectors = [
        a for a in spec.args if a.kind in (Kind.IOV_IN, Kind.IOV_OUT, Kind.MSG_IN, Kind.MSG_OUT)
    ]
    assert len(vectors) <= 1, name  # one iovec array per call (C keeps one)
    assert sum(a.clamp for a in spec.args) <= 1, name
    assert all(a.kind in POINTER_KINDS | {Kind.VAL, Kind.DROP} for a in spec.args)
    assert POINTER_KINDS == INPUT_KINDS | OUTPUT_KINDS


def test_cases_look_at_value_arguments_only() -> None:
    for name, f in FORWARDING.items():
        for case in f.cases:
            assert 1 <= len(case.when) <= 2, name
            for cond in case.when:
                for spec in (case.spec, f.spec):
                    if spec.placement in (Placement.HOME, Placement.TIME):
                        assert spec.args[cond.index].kind is Kind.VAL, (name, cond)


def test_ioctl_and_fcntl_sub_tables() -> None:
    names = {name: spec for name, spec in IOCTLS.values()}
    for request in REQUIRED_IOCTLS:
        assert request in names, request
    assert names["TIOCGWINSZ"].kind is Kind.OUT and names["TIOCGWINSZ"].size.add == 8
    assert names["TCGETS"].size.add == 36  # the kernel's struct termios, not glibc's
    unknown = FORWARDING["ioctl"].spec
    assert unknown.placement is Placement.UNFORWARDABLE and unknown.error == 25  # ENOTTY
    for command in ("F_GETLK", "F_SETLK", "F_SETLKW", "F_OFD_GETLK", "F_OFD_SETLK", "F_OFD_SETLKW"):
        spec = next(s for n, s in FCNTLS.values() if n == command)
        assert spec.kind is Kind.INOUT and spec.size.add == 32, command
    assert FORWARDING["fcntl"].spec.args == (ArgSpec(Kind.VAL),) * 3


def test_the_unforwardable_list_is_small_and_explained() -> None:
    names = [n for n, f in FORWARDING.items() if f.spec.placement is Placement.UNFORWARDABLE]
    assert len(names) <= 16, names
    assert "splice" not in names and "read" not in names


# ------------------------------------------------------------------ the filter


def _expected_action(name: str, args: tuple[int, ...], fast: bool = False) -> int:
    outcome, _ = BY_NAME[name].decision.outcome(args)
    if outcome in forward_filter.GUARDED:  # the guard's at home: the supervisor's here
        return bpf.RET_USER_NOTIF
    if outcome is not Outcome.ALLOW:
        return bpf.RET_ALLOW  # the base filter refuses it in the kernel
    where = placement(name, args)
    if where is Placement.LOCAL:
        return bpf.RET_ALLOW
    if fast and where is Placement.HOME and name not in forward_filter.SUPERVISOR_ONLY:
        return bpf.RET_TRAP | forward_filter.FWD_TRAP_MAGIC
    return bpf.RET_USER_NOTIF


def _samples(name: str) -> list[tuple[int, ...]]:
    out = [(0,) * 6, (2**64 - 1,) * 6, (3, 0x5401, 1, MAP_PRIVATE | MAP_ANONYMOUS, 5, 6)]
    rules = [c.when for c in FORWARDING[name].cases]
    rules += [r.when for r in BY_NAME[name].decision.rules]
    for when in rules:
        args = [0] * 6
        for cond in when:
            args[cond.index] = (args[cond.index] & ~cond.mask) | cond.value
        out.append(tuple(args))
        out.append(tuple(a ^ 1 for a in args))
    return out


@pytest.mark.parametrize("fast", [False, True], ids=["notify", "fast"])
@pytest.mark.parametrize("name", sorted(FORWARDING))
def test_the_filter_does_what_the_tables_say(name: str, fast: bool) -> None:
    program = FAST_PROGRAM if fast else PROGRAM
    nr = BY_NAME[name].nr
    for args in _samples(name):
        got = bpf.run(program, nr, args, ip=ELSEWHERE)
        assert got == _expected_action(name, args, fast), (name, args)


def test_the_calls_naming_threads_go_to_the_supervisor_in_the_fast_variant() -> None:
    """glibc's pthread_kill makes getpid and tgkill with every signal blocked: a trap
    there would kill the process (SIGSYS), so they go to mosix-remote, which knows
    the copy's threads; the other calls served at home trap to the shim."""
    for name in sorted(forward_filter.SUPERVISOR_ONLY):
        got = bpf.run(FAST_PROGRAM, BY_NAME[name].nr, (4321, 4322, 10, 0, 0, 0), ip=ELSEWHERE)
        assert got == bpf.RET_USER_NOTIF, name
    write = bpf.run(FAST_PROGRAM, BY_NAME["write"].nr, (1, 0, 1, 0, 0, 0), ip=ELSEWHERE)
    assert write == bpf.RET_TRAP | forward_filter.FWD_TRAP_MAGIC


@pytest.mark.parametrize("program", [PROGRAM, FAST_PROGRAM], ids=["notify", "fast"])
def test_unsupported_calls_go_to_the_supervisor_and_kernel_refusals_stay(
    program: bpf.Program,
) -> None:
    """The guard's calls (the unsupported-call mode) go to mosix-remote in both variants,
    never to the shim's trap; ENOSYS/EPERM refusals are left to the base filter."""
    by_policy = {
        policy: [s for s in SYSCALLS if s.decision.policy is policy]
        for policy in (Policy.UNSUPPORTED, Policy.ENOSYS)
    }
    assert by_policy[Policy.UNSUPPORTED] and by_policy[Policy.ENOSYS]
    for s in by_policy[Policy.UNSUPPORTED]:
        assert bpf.run(program, s.nr, ip=ELSEWHERE) == bpf.RET_USER_NOTIF, s.name
    for s in by_policy[Policy.ENOSYS]:
        assert bpf.run(program, s.nr, ip=ELSEWHERE) == bpf.RET_ALLOW, s.name
    ioctl, mmap, prio = BY_NAME["ioctl"].nr, BY_NAME["mmap"].nr, BY_NAME["getpriority"].nr
    setrlimit = BY_NAME["setrlimit"].nr
    # ioctl's refused requests, a writable shared map, the read-only one (the fix-up), a
    # priority naming a pid, and RLIMIT_NOFILE (EPERM in the kernel)
    assert bpf.run(program, ioctl, (3, 0x8914, 0, 0, 0, 0), ip=ELSEWHERE) == bpf.RET_USER_NOTIF
    shared_rw = (0, 4096, PROT_READ | PROT_WRITE, 0x01, 3, 0)
    shared_ro = (0, 4096, PROT_READ, 0x01, 3, 0)
    assert bpf.run(program, mmap, shared_rw, ip=ELSEWHERE) == bpf.RET_USER_NOTIF
    assert bpf.run(program, mmap, shared_ro, ip=ELSEWHERE) == bpf.RET_USER_NOTIF
    assert bpf.run(program, prio, (0, 4321, 0, 0, 0, 0), ip=ELSEWHERE) == bpf.RET_USER_NOTIF
    assert bpf.run(program, setrlimit, (7, 0, 0, 0, 0, 0), ip=ELSEWHERE) == bpf.RET_ALLOW


@pytest.mark.parametrize("program", [PROGRAM, FAST_PROGRAM], ids=["notify", "fast"])
def test_a_pinned_call_away_goes_to_the_supervisor_which_brings_the_process_home(
    program: bpf.Program,
) -> None:
    """What pins a process at home (locks, shared maps, a NUMA policy) is never made on
    a remote node: the supervisor asks to come home (remote_discipline.c), and the call
    is made again at home.  A thread is made where the process runs (it moves with it)."""
    pinned = [s for s in SYSCALLS if s.decision.policy is Policy.PINNED]
    assert {"mlock", "mbind", "shmat"} <= {s.name for s in pinned}
    for s in pinned:
        assert FORWARDING[s.name].spec.placement is Placement.BRING_HOME, s.name
        assert bpf.run(program, s.nr, ip=ELSEWHERE) == bpf.RET_USER_NOTIF, s.name
    thread = (0x3D0F00, 0x7F00_0000_1000, 0, 0, 0, 0)  # glibc's pthread_create
    assert bpf.run(program, BY_NAME["clone"].nr, thread, ip=ELSEWHERE) == bpf.RET_ALLOW
    assert placement("clone", thread) is Placement.LOCAL
    fork = (0x1200011, 0, 0, 0, 0, 0)  # glibc's fork: home first
    assert bpf.run(program, BY_NAME["clone"].nr, fork, ip=ELSEWHERE) == bpf.RET_USER_NOTIF
    assert placement("clone", fork) is Placement.BRING_HOME


def test_filter_entry_checks() -> None:
    read, mmap = BY_NAME["read"].nr, BY_NAME["mmap"].nr
    assert bpf.run(PROGRAM, read, ip=ELSEWHERE) == bpf.RET_USER_NOTIF
    anon = (0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, 2**64 - 1, 0)
    assert bpf.run(PROGRAM, mmap, anon, ip=ELSEWHERE) == bpf.RET_ALLOW
    assert bpf.run(PROGRAM, mmap, (0, 4096, PROT_READ, MAP_PRIVATE, 3, 0), ip=ELSEWHERE) == (
        bpf.RET_USER_NOTIF
    )
    assert bpf.run(PROGRAM, read, ip=RESTORER_IP) == bpf.RET_ALLOW  # the restorer's own calls
    assert bpf.run(PROGRAM, read, ip=RESTORER_IP + (1 << 32)) == bpf.RET_USER_NOTIF
    assert bpf.run(PROGRAM, 0x40000000 | read, ip=ELSEWHERE) == bpf.RET_KILL_PROCESS  # x32
    assert bpf.run(PROGRAM, 0x40000000 | read, ip=RESTORER_IP) == bpf.RET_ALLOW
    assert bpf.run(PROGRAM, read, arch=0x40000003, ip=RESTORER_IP) == bpf.RET_KILL_PROCESS  # i386
    assert bpf.run(PROGRAM, 1000, ip=ELSEWHERE) == bpf.RET_USER_NOTIF  # beyond the table
    assert len(PROGRAM.insns) <= 4096  # BPF_MAXINSNS
    assert not PROGRAM.patches()


def test_generated_files_carry_the_table() -> None:
    """csrc/generated/forward_table.h and docs/SYSCALLS.md (fresh: tests/test_generated.py)."""
    header = (REPO / "csrc" / "generated" / "forward_table.h").read_text()
    assert "static const struct sock_filter mosix_forward_filter[]" in header
    doc = (REPO / "docs" / "SYSCALLS.md").read_text()
    assert "| on a remote node |" in doc
    assert f"| {remote_text(BY_NAME['read'])} |" in doc
