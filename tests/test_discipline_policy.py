"""The policy table and what is generated from it (no processes: the table's logic)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mosix.discipline import bpf
from mosix.discipline.policy import (
    BY_NAME,
    MANUAL_LIMITED,
    MANUAL_UNSUPPORTED,
    OUTCOMES_WITH_ARGUMENT,
    PROBE_ERRNO_BASE,
    PROBE_NR,
    SYSCALLS,
    Outcome,
    Policy,
)

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
PROGRAMS = {p.name: p for p in bpf.programs()}
LIBC = (0x7F12_3450_0000, 0x7F12_3470_0000)  # [lo, hi) for the shim's gate
INSIDE, OUTSIDE = LIBC[0] + 0x1234, 0x5555_5555_1000
SYMBOLS = {
    "PROBE": bpf.RET_ERRNO | (PROBE_ERRNO_BASE + 1),
    "LO_HI": LIBC[0] >> 32,
    "LO_LO": LIBC[0] & 0xFFFFFFFF,
    "HI_HI": LIBC[1] >> 32,
    "HI_LO": LIBC[1] & 0xFFFFFFFF,
}


def test_every_syscall_of_the_kernel_headers_is_in_the_table_once() -> None:
    declared = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"#define __NR_(\w+) (\d+)", HEADER.read_text())
    }
    assert len(declared) > 300
    for name, nr in declared.items():
        assert name in BY_NAME, f"{name} ({nr}) is missing from the policy table"
        assert BY_NAME[name].nr == nr, name
    assert len({s.nr for s in SYSCALLS}) == len(SYSCALLS)
    assert len(BY_NAME) == len(SYSCALLS)


def test_every_decision_has_a_reason_and_limited_ones_have_rules() -> None:
    for s in SYSCALLS:
        assert s.decision.reason.strip(), s.name
        assert (s.decision.policy is Policy.LIMITED) == bool(s.decision.rules), s.name
        for rule in s.decision.rules:
            assert (rule.on is not None) == (rule.then in OUTCOMES_WITH_ARGUMENT), s.name


def test_the_manuals_list_is_known_to_the_table() -> None:
    assert set(BY_NAME) >= MANUAL_UNSUPPORTED | MANUAL_LIMITED


@pytest.mark.parametrize(
    "name",
    [
        "set_robust_list",
        "rseq",
        "futex",
        "madvise",
        "clock_nanosleep",
        "sched_getaffinity",
        "epoll_wait",
        "eventfd2",
        "wait4",
        "execve",
        "vfork",
        "prlimit64",
    ],
)
def test_todays_glibc_calls_are_allowed(name: str) -> None:
    assert BY_NAME[name].decision.outcome((0,) * 6)[0] is Outcome.ALLOW


@pytest.mark.parametrize(
    "name",
    [
        "personality",
        "ptrace",
        "chroot",
        "reboot",
        "sethostname",
        "unshare",
        "setns",
        "mount",
        "kexec_load",
        "init_module",
        "bpf",
        "process_vm_readv",
        "sched_setaffinity",
        "io_uring_setup",
        "capset",
        "move_pages",
    ],
)
def test_node_bound_calls_are_unsupported(name: str) -> None:
    assert BY_NAME[name].decision.policy is Policy.UNSUPPORTED


# What today's programs make natively: run, and keep the process on its node while the
# effect holds (the agent reads it from /proc), instead of killing it (the manual's).
@pytest.mark.parametrize(
    "name", ["mlock", "mlock2", "mlockall", "shmat", "mbind", "set_mempolicy", "userfaultfd"]
)
def test_calls_that_keep_a_process_on_its_node_are_pinned(name: str) -> None:
    assert BY_NAME[name].decision.policy is Policy.PINNED
    assert BY_NAME[name].decision.outcome((0,) * 6)[0] is Outcome.PIN
    assert "pinned while" in BY_NAME[name].decision.reason


@pytest.mark.parametrize(
    ("pid", "outcome"),
    [
        (0, Outcome.PIN),  # its own events (perf stat of itself, benchmark libraries)
        (1 << 32, Outcome.PIN),  # an int: high bits ignored
        (-1 & ((1 << 64) - 1), Outcome.UNSUPPORTED),  # every process on a CPU of the node
        (4321, Outcome.UNSUPPORTED),  # another process's
    ],
)
def test_perf_counters_of_its_own_are_pinned_others_unsupported(pid: int, outcome: Outcome) -> None:
    attr, cpu, group = 0x7F00_0000_1000, (-1) & ((1 << 64) - 1), (-1) & ((1 << 64) - 1)
    assert BY_NAME["perf_event_open"].decision.outcome((attr, pid, cpu, group, 8, 0))[0] is outcome


PTHREAD_CREATE_FLAGS = 0x3D0F00  # glibc: VM FS FILES SIGHAND THREAD SYSVSEM SETTLS *TID
GO_THREAD_FLAGS = 0x50F00  # Go's runtime: VM FS FILES SIGHAND SYSVSEM THREAD


@pytest.mark.parametrize(
    ("args", "outcome"),
    [
        ((PTHREAD_CREATE_FLAGS, 0x7F00_0000_1000, 0, 0, 0, 0), Outcome.ALLOW),
        ((GO_THREAD_FLAGS, 0x7F00_0000_1000, 0, 0, 0, 0), Outcome.ALLOW),
        ((0x1200011, 0, 0, 0, 0, 0), Outcome.ALLOW),  # glibc's fork
        ((0x4111, 0x7F00_0000_1000, 0, 0, 0, 0), Outcome.ALLOW),  # posix_spawn
        ((PTHREAD_CREATE_FLAGS | 0x10000000, 1, 0, 0, 0, 0), Outcome.UNSUPPORTED),  # NEWUSER
        ((PTHREAD_CREATE_FLAGS | 0x20000, 1, 0, 0, 0, 0), Outcome.UNSUPPORTED),  # NEWNS
        ((0x100 | 17, 0x7F00_0000_1000, 0, 0, 0, 0), Outcome.UNSUPPORTED),  # CLONE_VM alone
    ],
)
def test_threads_are_carried_and_other_sharing_is_not_supported(
    args: tuple[int, ...], outcome: Outcome
) -> None:
    assert BY_NAME["clone"].decision.outcome(args)[0] is outcome
    assert BY_NAME["clone3"].decision.outcome(args)[0] is Outcome.ENOSYS  # glibc falls back


def test_a_writable_shared_map_is_pinned_a_read_only_one_made_private() -> None:
    mmap = BY_NAME["mmap"].decision
    assert mmap.outcome((0, 32, 3, 1, 5, 0))[0] is Outcome.PIN  # RW, MAP_SHARED
    assert mmap.outcome((0, 32, 3, 3, 5, 0))[0] is Outcome.PIN  # MAP_SHARED_VALIDATE
    assert mmap.outcome((0, 32, 1, 1, 5, 0)) == (Outcome.FIXUP_PRIVATE, 3)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("capget", (0x7F00_0000_1000, 0x7F00_0000_2000, 0, 0, 0, 0)),
        ("get_mempolicy", (0, 0, 0, 0, 0, 0)),
        ("prctl", (23, 40, 0, 0, 0, 0)),  # PR_CAPBSET_READ (ps, pgrep)
        ("prctl", (1 << 32 | 23, 40, 0, 0, 0, 0)),  # an int: high bits ignored
        ("prctl", (0x41555856, 0x7F00_0000_1000, 512, 0, 0, 0)),  # PR_GET_AUXV
        ("prctl", (47, 1, 12, 0, 0, 0)),  # PR_CAP_AMBIENT_IS_SET
        ("munlock", (0x7F00_0000_1000, 4096, 0, 0, 0, 0)),
    ],
)
def test_read_only_queries_and_releases_are_carried(name: str, args: tuple[int, ...]) -> None:
    assert BY_NAME[name].decision.outcome(args)[0] is Outcome.ALLOW


@pytest.mark.parametrize(
    "args", [(8, 0, 0, 0, 0, 0), (47, 2, 12, 0, 0, 0), (24, 12, 0, 0, 0, 0)]
)  # PR_SET_KEEPCAPS, PR_CAP_AMBIENT_RAISE, PR_CAPBSET_DROP
def test_prctl_that_changes_privileges_is_still_unsupported(args: tuple[int, ...]) -> None:
    assert BY_NAME["prctl"].decision.outcome(args)[0] is Outcome.UNSUPPORTED


@pytest.mark.parametrize("name", ["pkey_alloc", "pkey_mprotect", "pkey_free", "memfd_secret"])
def test_cpu_features_another_node_may_lack_are_enosys_as_on_a_kernel_without(
    name: str,
) -> None:
    assert BY_NAME[name].decision.policy is Policy.ENOSYS


def test_pinned_calls_run_natively_at_home() -> None:
    base = PROGRAMS["mosix_base_prog"]
    for nr, args in (
        (BY_NAME["clone"].nr, (PTHREAD_CREATE_FLAGS, 1, 0, 0, 0, 0)),
        (BY_NAME["mlock"].nr, (0,) * 6),
        (BY_NAME["mmap"].nr, (0, 32, 3, 1, 5, 0)),
    ):
        assert bpf.run(base, nr, args, symbols=SYMBOLS) == bpf.RET_ALLOW
        for shim in ("mosix_shim_prog_notify", "mosix_shim_prog_enosys"):
            assert bpf.run(PROGRAMS[shim], nr, args, ip=INSIDE, symbols=SYMBOLS) == bpf.RET_ALLOW


def _samples(name: str) -> list[tuple[int, ...]]:
    """Argument vectors that reach every rule of ``name`` (and a few that reach none)."""
    out = [(0,) * 6, (2**64 - 1,) * 6, (0x7FFF_0000_0000, 1, 2, 3, 4, 5)]
    for rule in BY_NAME[name].decision.rules:
        args = [0] * 6
        for cond in rule.when:
            args[cond.index] = (args[cond.index] & ~cond.mask) | cond.value
        out.append(tuple(args))
        out.append(tuple(a | (1 << 40) for a in args))  # high bits an int argument ignores
        out.append(tuple(a ^ 1 for a in args))
    return out


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_compiled_programs_do_what_the_table_says(name: str) -> None:
    s = BY_NAME[name]
    for args in _samples(name):
        outcome, on = s.decision.outcome(args)
        classified = bpf.run(PROGRAMS["mosix_classify_prog"], s.nr, args)
        assert classified == int(outcome) | ((on or 0) << 8), (name, args)
        base = bpf.run(PROGRAMS["mosix_base_prog"], s.nr, args, symbols=SYMBOLS)
        assert base == bpf.base_action(outcome, on).value, (name, args)
        for prog, enosys in (("mosix_shim_prog_notify", False), ("mosix_shim_prog_enosys", True)):
            action = bpf.shim_action(enosys)(outcome, on)
            inside = bpf.run(PROGRAMS[prog], s.nr, args, ip=INSIDE, symbols=SYMBOLS)
            outside = bpf.run(PROGRAMS[prog], s.nr, args, ip=OUTSIDE, symbols=SYMBOLS)
            assert inside == action.value, (prog, name, args)
            assert outside == (bpf.RET_ALLOW if isinstance(action, bpf.Gated) else action.value), (
                prog,
                name,
                args,
            )


@pytest.mark.parametrize("ip", [LIBC[0] - 1, LIBC[0], LIBC[1] - 1, LIBC[1], LIBC[0] ^ (1 << 32)])
def test_the_shim_gate_compares_the_whole_instruction_pointer(ip: int) -> None:
    mmap_shared_ro = (0, 4096, 1, 1, 3, 0)  # PROT_READ, MAP_SHARED
    got = bpf.run(
        PROGRAMS["mosix_shim_prog_notify"],
        BY_NAME["mmap"].nr,
        mmap_shared_ro,
        ip=ip,
        symbols=SYMBOLS,
    )
    inside = LIBC[0] <= ip < LIBC[1]
    assert got == (bpf.RET_TRAP | bpf.TRAP_MAGIC if inside else bpf.RET_ALLOW)


def test_architecture_x32_unknown_numbers_and_the_probe() -> None:
    base = PROGRAMS["mosix_base_prog"]
    assert bpf.run(base, 39, arch=0x40000003, symbols=SYMBOLS) == bpf.RET_KILL_PROCESS  # i386
    assert bpf.run(base, 0x40000000 | 39, symbols=SYMBOLS) == bpf.RET_KILL_PROCESS  # x32
    assert bpf.run(base, 1000, symbols=SYMBOLS) == bpf.RET_ERRNO | bpf.ENOSYS
    assert bpf.run(base, PROBE_NR, symbols=SYMBOLS) == SYMBOLS["PROBE"]
    for shim in ("mosix_shim_prog_notify", "mosix_shim_prog_enosys"):
        assert bpf.run(PROGRAMS[shim], 39, arch=0x40000003, symbols=SYMBOLS) == bpf.RET_ALLOW


def _kernel_caches_as_allow(program: bpf.Program, nr: int) -> bool:
    """The kernel's seccomp action cache (seccomp_is_const_allow): ALLOW from nr/arch alone."""
    acc, pc = 0, 0
    while True:
        insn = program.insns[pc]
        pc += 1
        if insn.code == bpf.LD_W_ABS:
            if insn.k == bpf.OFF_NR:
                acc = nr
            elif insn.k == bpf.OFF_ARCH:
                acc = bpf.AUDIT_ARCH_X86_64
            else:
                return False
        elif insn.code == bpf.RET_K:
            return insn.k == bpf.RET_ALLOW
        elif insn.code == bpf.JMP_JA:
            pc += insn.k
        elif insn.code == bpf.ALU_AND_K:
            acc &= insn.k
        else:
            ops = {
                bpf.JMP_JEQ_K: acc == insn.k,
                bpf.JMP_JGE_K: acc >= insn.k,
                bpf.JMP_JGT_K: acc > insn.k,
                bpf.JMP_JSET_K: bool(acc & insn.k),
            }
            pc += insn.jt if ops[insn.code] else insn.jf


def test_allowed_calls_cost_nothing_in_any_filter() -> None:
    """Number-only ALLOW: the kernel skips the filters for them (the +5% target)."""
    allowed = [s for s in SYSCALLS if s.decision.policy is Policy.ALLOW]
    for name in ("mosix_base_prog", "mosix_shim_prog_notify", "mosix_shim_prog_enosys"):
        for s in allowed:
            assert _kernel_caches_as_allow(PROGRAMS[name], s.nr), (name, s.name)


def test_filters_are_small_enough_to_stack() -> None:
    """Each dynamic exec stacks a shim filter; the kernel allows 32768 instructions per path."""
    assert len(PROGRAMS["mosix_base_prog"].insns) <= 512
    assert len(PROGRAMS["mosix_shim_prog_notify"].insns) <= 128
    assert len(PROGRAMS["mosix_shim_prog_enosys"].insns) <= 300
