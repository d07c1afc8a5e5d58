"""Compile the policy table into classic BPF programs for seccomp.

One compiler, several programs: each program maps every outcome of the
table (:class:`~mosix.discipline.policy.Outcome`) to an action.  The base
filter (installed by the launcher, answered by the guard), the shim's filter
(one per dynamically linked program, answered by its SIGSYS handler) and the
classifier (run by the guard and the shim's handler to learn which outcome a
trapped call had) differ only in that mapping.

Program shape: check the architecture and x32, then a binary search over
runs of syscall numbers whose leaves are constant returns (the kernel's
action cache sees these as "always allow" without running the filter), and
argument checks only for the few ``limited`` calls.  Actions that must only
apply to calls made from libc's text (the shim's, see ``csrc/preload_shim.c``)
go through an instruction-pointer gate whose bounds are patched at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mosix.discipline.policy import (
    BY_NAME,
    CHECKPOINT_NR,
    OUTCOMES_WITH_ARGUMENT,
    PRIVATE_DIR_CHECKS,
    PROBE_NR,
    SYSCALLS,
    Arg,
    Outcome,
    Policy,
    Syscall,
)

# struct seccomp_data offsets
OFF_NR, OFF_ARCH, OFF_IP, OFF_ARGS = 0, 4, 8, 16
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# classic BPF opcodes (linux/bpf_common.h)
LD_W_ABS = 0x20
ALU_AND_K = 0x54
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JGE_K = 0x35
JMP_JSET_K = 0x45
RET_K = 0x06

# seccomp return values (linux/seccomp.h)
RET_KILL_PROCESS = 0x80000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_ALLOW = 0x7FFF0000
ENOSYS, EPERM = 38, 1

TRAP_MAGIC = 0x4D58  # SECCOMP_RET_DATA of the shim's traps (si_errno): 'MX'

# Constants only known at run time; the C side patches them in.
PATCH_SYMBOLS = ("PROBE", "LO_HI", "LO_LO", "HI_HI", "HI_LO")

K = int | str  # an instruction's k: a number or a PATCH_SYMBOLS name


@dataclass(frozen=True)
class Ret:
    """Return ``value``."""

    value: K


@dataclass(frozen=True)
class Gated:
    """Return ``value`` when the call came from libc's text, else allow."""

    value: K


Action = Ret | Gated
Mapping = Callable[[Outcome, int | None], Action]


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: K


@dataclass(frozen=True)
class Program:
    name: str
    insns: tuple[Insn, ...]

    def patches(self) -> list[tuple[int, str]]:
        return [(i, insn.k) for i, insn in enumerate(self.insns) if isinstance(insn.k, str)]


# ------------------------------------------------------------------ assembler


class Assembler:
    """Instructions with symbolic jump targets; far conditional jumps get trampolines."""

    def __init__(self) -> None:
        # ("label", name) | ("op", code, k) | ("jmp", code, k, jt, jf) | ("ja", label)
        self.items: list[tuple] = []
        self.serial = 0

    def fresh(self, stem: str) -> str:
        self.serial += 1
        return f"{stem}.{self.serial}"

    def label(self, name: str) -> None:
        self.items.append(("label", name))

    def op(self, code: int, k: K = 0) -> None:
        self.items.append(("op", code, k))

    def jump(self, code: int, k: K, jt: str | None, jf: str | None) -> None:
        """Conditional jump; ``None`` means the next instruction."""
        self.items.append(("jmp", code, k, jt, jf))

    def ja(self, target: str) -> None:
        self.items.append(("ja", target))

    def _positions(self, items: list[tuple]) -> dict[str, int]:
        where: dict[str, int] = {}
        pc = 0
        for item in items:
            if item[0] == "label":
                where[item[1]] = pc
            else:
                pc += 1
        return where

    def assemble(self) -> tuple[Insn, ...]:
        items = list(self.items)
        while True:
            where = self._positions(items)
            pc, far = 0, None
            for i, item in enumerate(items):
                if item[0] == "label":
                    continue
                if item[0] == "jmp":
                    for target in item[3:5]:
                        if target is not None and not 0 <= where[target] - pc - 1 <= 255:
                            far = i
                pc += 1
                if far is not None:
                    break
            if far is None:
                break
            _, code, k, jt, jf = items[far]
            if jt is None or jf is None:
                after = self.fresh("next")
                items.insert(far + 1, ("label", after))
                jt, jf = jt or after, jf or after
            t_label, f_label = self.fresh("far_t"), self.fresh("far_f")
            items[far : far + 1] = [
                ("jmp", code, k, t_label, f_label),
                ("label", t_label),
                ("ja", jt),
                ("label", f_label),
                ("ja", jf),
            ]
        where = self._positions(items)
        out: list[Insn] = []
        for item in items:
            pc = len(out)
            match item:
                case ("label", _):
                    continue
                case ("op", code, k):
                    out.append(Insn(code, 0, 0, k))
                case ("jmp", code, k, jt, jf):
                    t = 0 if jt is None else where[jt] - pc - 1
                    f = 0 if jf is None else where[jf] - pc - 1
                    out.append(Insn(code, t, f, k))
                case ("ja", target):
                    out.append(Insn(JMP_JA, 0, 0, where[target] - pc - 1))
        return tuple(out)


# ------------------------------------------------------------------- compiler

Leaf = tuple[str, K]  # ("ret", k) | ("gate", k) | ("block", syscall name)


def _leaf(action: Action) -> Leaf:
    return ("ret", action.value) if isinstance(action, Ret) else ("gate", action.value)


def _decisions(syscall: Syscall, mapping: Mapping) -> list[tuple[tuple[Arg, ...], Action]]:
    """(conditions, action) in order; the last has no conditions."""
    d = syscall.decision
    if d.policy is not Policy.LIMITED:
        outcome, on = d.outcome((0,) * 6)
        return [((), mapping(outcome, on))]
    steps = [(rule.when, mapping(rule.then, rule.on)) for rule in d.rules]
    return [*steps, ((), mapping(d.otherwise, None))]


def compile_program(
    name: str, mapping: Mapping, linear: bool = False, table: Iterable[Syscall] = SYSCALLS
) -> Program:
    table = sorted(table, key=lambda s: s.nr)
    asm = Assembler()
    kill = _leaf(mapping(Outcome.KILL, None))
    gates: dict[K, str] = {}

    def emit_leaf(leaf: Leaf) -> None:
        kind, value = leaf
        if kind == "ret":
            asm.op(RET_K, value)
        elif kind == "gate":
            asm.ja(gates.setdefault(value, asm.fresh("gate")))
        else:
            asm.ja(f"sys.{value}")

    # architecture and x32
    asm.op(LD_W_ABS, OFF_ARCH)
    asm.jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, None, "kill")
    asm.op(LD_W_ABS, OFF_NR)
    asm.jump(JMP_JSET_K, X32_SYSCALL_BIT, "kill", None)

    # one leaf per number, then runs of equal leaves
    blocks: list[tuple[Syscall, list[tuple[tuple[Arg, ...], Action]]]] = []
    by_nr: dict[int, Leaf] = {}
    for s in table:
        steps = _decisions(s, mapping)
        if len({a for _, a in steps}) == 1:
            by_nr[s.nr] = _leaf(steps[0][1])
        else:
            by_nr[s.nr] = ("block", s.name)
            blocks.append((s, steps))
    unknown = _leaf(mapping(Outcome.ENOSYS, None))
    by_nr[PROBE_NR] = _leaf(mapping(Outcome.PROBE, None))
    by_nr[CHECKPOINT_NR] = _leaf(mapping(Outcome.CHECKPOINT, None))
    points: dict[int, Leaf] = {0: unknown}
    for nr in sorted(by_nr):  # ascending: a later number overrides the gap after the last
        points[nr] = by_nr[nr]
        points.setdefault(nr + 1, unknown)
    runs: list[tuple[int, Leaf]] = []  # (first number, leaf) up to the next run's first
    for start in sorted(points):
        if not runs or runs[-1][1] != points[start]:
            runs.append((start, points[start]))

    if linear:
        # Only the numbers whose leaf differs from the default, as a chain of
        # tests: far fewer instructions than a search tree when most numbers
        # share one leaf (each filter a dynamic program stacks costs its length).
        default = runs[-1][1] if runs[-1][1] == unknown else unknown
        targets: dict[Leaf, str] = {}
        special = [
            (start, runs[i + 1][0] - 1 if i + 1 < len(runs) else X32_SYSCALL_BIT - 1, leaf)
            for i, (start, leaf) in enumerate(runs)
            if leaf != default
        ]
        special.sort(key=lambda r: (r[2][0] != "block", r[0]))  # argument checks first
        for first, last, leaf in special:
            if leaf[0] == "block":
                target = f"sys.{leaf[1]}"
            elif leaf[0] == "gate":
                target = gates.setdefault(leaf[1], asm.fresh("gate"))
            else:
                target = targets.setdefault(leaf, asm.fresh("leaf"))
            if first == last:
                asm.jump(JMP_JEQ_K, first, target, None)
            else:
                skip = asm.fresh("skip")
                asm.jump(JMP_JGE_K, first, None, skip)
                asm.jump(JMP_JGT_K, last, skip, target)
                asm.label(skip)
        emit_leaf(default)
        for leaf, target in targets.items():
            asm.label(target)
            emit_leaf(leaf)
    else:

        def search(lo: int, hi: int) -> None:
            if hi - lo == 1:
                emit_leaf(runs[lo][1])
                return
            mid = (lo + hi) // 2
            right = asm.fresh("ge")
            asm.jump(JMP_JGE_K, runs[mid][0], right, None)
            search(lo, mid)
            asm.label(right)
            search(mid, hi)

        search(0, len(runs))

    for s, steps in blocks:
        asm.label(f"sys.{s.name}")
        shared: dict[Leaf, str] = {}  # leaves reached by one-test rules
        loaded: tuple[int, int] | None = None  # (offset, mask) in the accumulator
        for conditions, action in steps:
            leaf = _leaf(action)
            tests = [
                (OFF_ARGS + 8 * c.index + 4 * half, mask, (c.value >> 32 * half) & mask)
                for c in conditions
                for half in (0, 1)
                if (mask := (c.mask >> 32 * half) & 0xFFFFFFFF)
            ]
            if len(tests) == 1:  # e.g. a list of ioctl requests: load once, compare each
                offset, mask, value = tests[0]
                if loaded != (offset, mask):
                    asm.op(LD_W_ABS, offset)
                    if mask != 0xFFFFFFFF:
                        asm.op(ALU_AND_K, mask)
                    loaded = (offset, mask)
                asm.jump(JMP_JEQ_K, value, shared.setdefault(leaf, asm.fresh("leaf")), None)
                continue
            fail = asm.fresh("next_rule")
            for offset, mask, value in tests:
                asm.op(LD_W_ABS, offset)
                if mask != 0xFFFFFFFF:
                    asm.op(ALU_AND_K, mask)
                asm.jump(JMP_JEQ_K, value, None, fail)
            emit_leaf(leaf)  # the last step has no tests: the block always ends here
            asm.label(fail)
            loaded = None
        for leaf, label in shared.items():
            asm.label(label)
            emit_leaf(leaf)

    asm.label("kill")
    emit_leaf(kill)

    for value, label in gates.items():
        # libc's text is [LO, HI); the instruction pointer is after the syscall instruction.
        above, act, allow = asm.fresh("above"), asm.fresh("act"), asm.fresh("allow")
        asm.label(label)
        asm.op(LD_W_ABS, OFF_IP + 4)
        asm.jump(JMP_JGT_K, "LO_HI", above, None)
        asm.jump(JMP_JEQ_K, "LO_HI", None, allow)
        asm.op(LD_W_ABS, OFF_IP)
        asm.jump(JMP_JGE_K, "LO_LO", None, allow)
        asm.label(above)
        asm.op(LD_W_ABS, OFF_IP + 4)
        asm.jump(JMP_JGT_K, "HI_HI", allow, None)
        asm.jump(JMP_JEQ_K, "HI_HI", None, act)
        asm.op(LD_W_ABS, OFF_IP)
        asm.jump(JMP_JGE_K, "HI_LO", allow, act)
        asm.label(act)
        asm.op(RET_K, value)
        asm.label(allow)
        asm.op(RET_K, RET_ALLOW)
    return Program(name, asm.assemble())


# ------------------------------------------------------------------- mappings


def base_action(outcome: Outcome, on: int | None) -> Action:
    """The launcher's filter: answered in the kernel or by the guard (user notification)."""
    return Ret(
        {
            Outcome.ALLOW: RET_ALLOW,
            Outcome.PIN: RET_ALLOW,  # runs natively; the agent sees what keeps it here
            Outcome.ENOSYS: RET_ERRNO | ENOSYS,
            Outcome.EPERM: RET_ERRNO | EPERM,
            Outcome.UNSUPPORTED: RET_USER_NOTIF,
            Outcome.FIXUP_PRIVATE: RET_USER_NOTIF,
            Outcome.SELF_ONLY: RET_USER_NOTIF,
            Outcome.STOP_TO_TSTP: RET_ERRNO | EPERM,  # the shim's trap converts it first
            Outcome.KEEP_SIGSYS: RET_ALLOW,  # no shim, no handler to keep
            Outcome.KILL: RET_KILL_PROCESS,
            Outcome.PROBE: "PROBE",
            Outcome.CHECKPOINT: RET_USER_NOTIF,
        }[outcome]
    )


def shim_action(enosys_mode: bool) -> Mapping:
    """The shim's filter, acting only on calls made from libc's text.

    It traps (SIGSYS) only what needs work in the process: the mmap fix-up and
    SIGSTOP.  Under -e unsupported calls fail with ENOSYS right in the kernel
    (no handler: works even where libc has blocked every signal, as
    pthread_create does around clone); under -u and -w they go on to the
    base filter and the guard, whose kill no SIGSYS handler can avoid.
    """

    def action(outcome: Outcome, on: int | None) -> Action:
        if outcome is Outcome.UNSUPPORTED and enosys_mode:
            return Gated(RET_ERRNO | ENOSYS)
        if outcome in (Outcome.STOP_TO_TSTP, Outcome.FIXUP_PRIVATE):
            return Gated(RET_TRAP | TRAP_MAGIC)
        if outcome is Outcome.KEEP_SIGSYS:
            return Gated(RET_ERRNO | 0)
        return Ret(RET_ALLOW)  # the base filter decides (SELF_ONLY: the guard)

    return action


def classify_action(outcome: Outcome, on: int | None) -> Action:
    """The classifier: the outcome, with its argument index in bits 8-15."""
    assert (on is not None) == (outcome in OUTCOMES_WITH_ARGUMENT)
    return Ret(int(outcome) | ((on or 0) << 8))


def private_dirs_prefix() -> Program:
    """Put before the base filter of a tree with private directories (mosrun -X): the
    calls of PRIVATE_DIR_CHECKS go to the guard, which looks at the name's directory;
    every other call falls through to the base filter (whose first check is the
    architecture's again)."""
    asm = Assembler()
    asm.op(LD_W_ABS, OFF_ARCH)
    asm.jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, None, "base")
    asm.op(LD_W_ABS, OFF_NR)
    for check in PRIVATE_DIR_CHECKS:
        asm.jump(JMP_JEQ_K, BY_NAME[check.name].nr, "guard", None)
    asm.ja("base")
    asm.label("guard")
    asm.op(RET_K, RET_USER_NOTIF)
    asm.label("base")
    return Program("mosix_private_prefix_prog", asm.assemble())


def programs() -> list[Program]:
    return [
        compile_program("mosix_base_prog", base_action),
        private_dirs_prefix(),
        compile_program("mosix_shim_prog_notify", shim_action(False), linear=True),
        compile_program("mosix_shim_prog_enosys", shim_action(True), linear=True),
        compile_program("mosix_classify_prog", classify_action),
    ]


# ---------------------------------------------------------------- interpreter


def run(
    program: Program,
    nr: int,
    args: tuple[int, ...] = (0,) * 6,
    ip: int = 0,
    arch: int = AUDIT_ARCH_X86_64,
    symbols: dict[str, int] | None = None,
) -> int:
    """Run ``program`` on one call as the kernel would (for tests)."""
    symbols = symbols or {}
    data = [nr & 0xFFFFFFFF, arch, ip & 0xFFFFFFFF, ip >> 32]
    for a in args:
        data += [a & 0xFFFFFFFF, (a >> 32) & 0xFFFFFFFF]
    acc, pc = 0, 0
    insns = program.insns
    while True:
        insn = insns[pc]
        k = symbols[insn.k] if isinstance(insn.k, str) else insn.k
        pc += 1
        if insn.code == LD_W_ABS:
            acc = data[k // 4]
        elif insn.code == ALU_AND_K:
            acc &= k
        elif insn.code == JMP_JA:
            pc += k
        elif insn.code == RET_K:
            return k
        else:
            taken = {
                JMP_JEQ_K: acc == k,
                JMP_JGT_K: acc > k,
                JMP_JGE_K: acc >= k,
                JMP_JSET_K: bool(acc & k),
            }[insn.code]
            pc += insn.jt if taken else insn.jf
