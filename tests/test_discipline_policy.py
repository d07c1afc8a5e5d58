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
        "mlock",
        "chroot",
        "reboot",
        "sethostname",
        "unshare",
        "setns",
        "mount",
        "kexec_load",
        "init_module",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "process_vm_readv",
        "sched_setaffinity",
        "io_uring_setup",
        "shmat",
    ],
)
def test_node_bound_calls_are_unsupported(name: str) -> None:
    assert BY_NAME[name].decision.policy is Policy.UNSUPPORTED


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
