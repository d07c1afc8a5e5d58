"""The forward filter: the seccomp program a migrated process runs under.

It hands every call that does not run locally to the supervisor on the remote
node (seccomp user notification) and lets everything else run.  Built with
:mod:`mosix.discipline.bpf` from two tables: the policy and the forwarding
table (what runs where).  What the policy leaves to the guard at home (the
unsupported-call mode, the mmap fix-up, a priority call naming a pid) goes to
the supervisor too, which applies the mode as the guard would (the copy's base
filter has no listener: the kernel gives one per process); what the policy
refuses in the kernel (ENOSYS, EPERM) is left to the base filter.

Program: the architecture check (not x86-64: kill), then calls made from the
restorer's text (instruction pointer's high half ``RESTORER_HIGH``, where the
restorer is linked) are allowed, as it runs before the process resumes; x32
numbers kill; numbers beyond the table go to the supervisor (which answers
ENOSYS); then one leaf per number, with argument checks where the decision
depends on them (mmap's MAP_ANONYMOUS, getrusage's who, the clocks).

The *fast* variant (:func:`program` with ``fast=True``) is for a copy whose
image has the preload shim's SIGSYS handler: calls placed at home trap
(``SECCOMP_RET_TRAP`` with ``FWD_TRAP_MAGIC``, which beats the user
notification of any filter) and the shim marshals them itself over the direct
channels at descriptors ``DIRECT_FD`` down (one per thread that may call at
once, at most ``DIRECT_MAX``).  The shim's own channel I/O (sendto and
recvfrom on one of them with ``DIRECT_MAGIC`` in the sixth argument, which
the kernel ignores with a null address) is let through before anything else.
Other calls that do not run locally (bring home, file maps, clocks,
unforwardable ones) still go to the supervisor, and so does MOSIX's checkpoint
call (the program's own request: the supervisor asks home, csrc/remote/remote_checkpoint.h).
"""

from __future__ import annotations

from mosix.ckpt.format import RESTORER_BASE
from mosix.discipline import bpf
from mosix.discipline.forwarding import FORWARDING, Placement
from mosix.discipline.policy import SYSCALLS, Arg, Decision, Outcome, Policy, Rule, Syscall

NAME = "mosix_forward_filter"
RESTORER_HIGH = RESTORER_BASE >> 32  # 0x00002000

FAST_NAME = "mosix_forward_filter_fast"

# The fast variant's constants (generated into forward_table.h for C).
FWD_TRAP_MAGIC = 0x4D46  # SECCOMP_RET_DATA (si_errno) of a call for the shim: 'MF'
DIRECT_FD = 1023  # the first direct channel in the copy (RLIMIT_NOFILE is 1024 there)
DIRECT_MAX = 8  # direct channels at most, at DIRECT_FD, DIRECT_FD - 1, ... (one per thread)
DIRECT_MAGIC = 0x4D584446  # sendto/recvfrom's sixth argument on the direct channel
SENDTO, RECVFROM = 44, 45

# Policy outcomes the guard answers at home: on a remote node the supervisor does.  A
# pinned call (which runs natively at home) goes to the supervisor too: it brings the
# process home, where the call is made again (remote_discipline.c).
GUARDED = frozenset({Outcome.UNSUPPORTED, Outcome.FIXUP_PRIVATE, Outcome.SELF_ONLY, Outcome.PIN})

# Calls the fast variant still sends to the supervisor: glibc's pthread_kill makes
# getpid and tgkill with every signal blocked (a trap, SIGSYS, would kill the
# process), and these name threads, which are the supervisor's to know (a
# thread other than the main one is signalled where it runs: mosix_remote.c).
SUPERVISOR_ONLY = frozenset({"getpid", "gettid", "tgkill", "tkill"})

# Outcomes of the synthetic table compiled below.
LOCAL = Outcome.ALLOW  # runs here (or the base filter decides)
NOTIFY = Outcome.UNSUPPORTED  # goes to the supervisor
FAST = Outcome.EPERM  # fast variant: goes home through the shim's handler


def filter_action(outcome: Outcome, on: int | None) -> bpf.Action:
    del on
    return bpf.Ret(
        {
            LOCAL: bpf.RET_ALLOW,
            NOTIFY: bpf.RET_USER_NOTIF,
            FAST: bpf.RET_TRAP | FWD_TRAP_MAGIC,
            Outcome.ENOSYS: bpf.RET_USER_NOTIF,  # numbers beyond the table
            Outcome.KILL: bpf.RET_KILL_PROCESS,
            Outcome.PROBE: bpf.RET_ALLOW,  # the base filter answers the shim's probe
            Outcome.CHECKPOINT: bpf.RET_USER_NOTIF,  # MOSIX's checkpoint call: home serves it
        }[outcome]
    )


def _notify(placement: Placement, fast: bool = False) -> Outcome:
    if placement is Placement.LOCAL:
        return LOCAL
    return FAST if fast and placement is Placement.HOME else NOTIFY


def _policy_steps(s: Syscall) -> list[tuple[tuple[Arg, ...], Outcome]]:
    d = s.decision
    if d.policy is not Policy.LIMITED:
        return [((), d.outcome((0,) * 6)[0])]
    return [*((r.when, r.then) for r in d.rules), ((), d.otherwise)]


def decision(s: Syscall, fast: bool = False) -> Decision:
    """What the forward filter does with ``s``: LOCAL, NOTIFY or FAST, rules in order.

    Each policy rule that allows the call is refined by the forwarding cases;
    a policy rule the guard would answer at home gives NOTIFY (the supervisor
    applies the unsupported-call mode, in both variants), any other refusal
    LOCAL, so the base filter refuses it in the kernel.
    """
    forwarding = FORWARDING[s.name]
    fast = fast and s.name not in SUPERVISOR_ONLY
    default = _notify(forwarding.spec.placement, fast)
    # Cases that end where the default does change nothing.
    cases = [(c.when, _notify(c.spec.placement, fast)) for c in forwarding.cases]
    while cases and cases[-1][1] == default:
        cases.pop()
    steps: list[tuple[tuple[Arg, ...], Outcome]] = []
    for when, outcome in _policy_steps(s):
        if outcome is not Outcome.ALLOW:
            steps.append((when, NOTIFY if outcome in GUARDED else LOCAL))
            continue
        steps += [((*when, *case_when), then) for case_when, then in cases]
        steps.append((when, default))
    *rules, (last_when, otherwise) = steps
    assert last_when == (), s.name  # the policy's last step has no conditions
    if not rules and otherwise is not FAST:
        return Decision(Policy.ALLOW if otherwise is LOCAL else Policy.UNSUPPORTED, "forward")
    if not rules:  # FAST everywhere: a limited decision without rules says so
        return Decision(Policy.LIMITED, "forward", otherwise=otherwise)
    return Decision(
        Policy.LIMITED, "forward", tuple(Rule(w, o) for w, o in rules), otherwise=otherwise
    )


def _direct_gate() -> list[bpf.Insn]:
    """sendto/recvfrom(a direct channel, ..., DIRECT_MAGIC) -> allow; else on to the table."""
    arg0, arg5 = bpf.OFF_ARGS, bpf.OFF_ARGS + 5 * 8
    return [
        bpf.Insn(bpf.LD_W_ABS, 0, 0, bpf.OFF_NR),
        bpf.Insn(bpf.JMP_JEQ_K, 1, 0, SENDTO),
        bpf.Insn(bpf.JMP_JEQ_K, 0, 8, RECVFROM),
        bpf.Insn(bpf.LD_W_ABS, 0, 0, arg0),
        bpf.Insn(bpf.JMP_JGE_K, 0, 6, DIRECT_FD - DIRECT_MAX + 1),
        bpf.Insn(bpf.JMP_JGT_K, 5, 0, DIRECT_FD),
        bpf.Insn(bpf.LD_W_ABS, 0, 0, arg5),
        bpf.Insn(bpf.JMP_JEQ_K, 0, 3, DIRECT_MAGIC),
        bpf.Insn(bpf.LD_W_ABS, 0, 0, arg5 + 4),
        bpf.Insn(bpf.JMP_JEQ_K, 0, 1, 0),
        bpf.Insn(bpf.RET_K, 0, 0, bpf.RET_ALLOW),
    ]


def program(fast: bool = False) -> bpf.Program:
    """The forward filter; ``fast``: the variant for a copy with the shim's handler."""
    name = FAST_NAME if fast else NAME
    table = [Syscall(s.nr, s.name, decision(s, fast)) for s in SYSCALLS]
    compiled = bpf.compile_program(name, filter_action, table=table)
    insns = list(compiled.insns)
    # compile_program starts: load arch; arch == x86-64 ? next : kill; load nr; ...
    # The restorer's gate goes between the architecture check and the rest.
    load_arch, check_arch = insns[0], insns[1]
    assert (load_arch.code, load_arch.k) == (bpf.LD_W_ABS, bpf.OFF_ARCH)
    assert (check_arch.code, check_arch.k, check_arch.jt) == (
        bpf.JMP_JEQ_K,
        bpf.AUDIT_ARCH_X86_64,
        0,
    )
    gate = [
        bpf.Insn(bpf.LD_W_ABS, 0, 0, bpf.OFF_IP + 4),
        bpf.Insn(bpf.JMP_JEQ_K, 0, 1, RESTORER_HIGH),
        bpf.Insn(bpf.RET_K, 0, 0, bpf.RET_ALLOW),
    ]
    if fast:
        gate += _direct_gate()
    skip = check_arch.jf + len(gate)
    assert skip <= 255, "the kill path moved out of a conditional jump's reach"
    insns[1] = bpf.Insn(check_arch.code, 0, skip, check_arch.k)
    return bpf.Program(name, (insns[0], insns[1], *gate, *insns[2:]))
