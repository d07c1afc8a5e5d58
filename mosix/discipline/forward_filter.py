"""The forward filter: the seccomp program a migrated process runs under.

It hands every call that does not run locally to the supervisor on the remote
node (seccomp user notification) and lets everything else run.  Built with
:mod:`mosix.discipline.bpf` from two tables: the policy (what the discipline
refuses is left to the base filter, so the guard still answers it) and the
forwarding table (what runs where).

Program: the architecture check (not x86-64: kill), then calls made from the
restorer's text (instruction pointer's high half ``RESTORER_HIGH``, where the
restorer is linked) are allowed, as it runs before the process resumes; x32
numbers kill; numbers beyond the table go to the supervisor (which answers
ENOSYS); then one leaf per number, with argument checks where the decision
depends on them (mmap's MAP_ANONYMOUS, getrusage's who, the clocks).
"""

from __future__ import annotations

from mosix.ckpt.format import RESTORER_BASE
from mosix.discipline import bpf
from mosix.discipline.forwarding import FORWARDING, Placement
from mosix.discipline.policy import SYSCALLS, Arg, Decision, Outcome, Policy, Rule, Syscall

NAME = "mosix_forward_filter"
RESTORER_HIGH = RESTORER_BASE >> 32  # 0x00002000

# Outcomes of the synthetic table compiled below.
LOCAL = Outcome.ALLOW  # runs here (or the base filter decides)
NOTIFY = Outcome.UNSUPPORTED  # goes to the supervisor


def filter_action(outcome: Outcome, on: int | None) -> bpf.Action:
    del on
    return bpf.Ret(
        {
            LOCAL: bpf.RET_ALLOW,
            NOTIFY: bpf.RET_USER_NOTIF,
            Outcome.ENOSYS: bpf.RET_USER_NOTIF,  # numbers beyond the table
            Outcome.KILL: bpf.RET_KILL_PROCESS,
            Outcome.PROBE: bpf.RET_ALLOW,  # the base filter answers the shim's probe
            Outcome.CHECKPOINT: bpf.RET_ALLOW,  # and MOSIX's checkpoint call
        }[outcome]
    )


def _notify(placement: Placement) -> Outcome:
    return LOCAL if placement is Placement.LOCAL else NOTIFY


def _policy_steps(s: Syscall) -> list[tuple[tuple[Arg, ...], Outcome]]:
    d = s.decision
    if d.policy is not Policy.LIMITED:
        return [((), d.outcome((0,) * 6)[0])]
    return [*((r.when, r.then) for r in d.rules), ((), d.otherwise)]


def decision(s: Syscall) -> Decision:
    """What the forward filter does with ``s``: LOCAL or NOTIFY, rules in order.

    Each policy rule that allows the call is refined by the forwarding cases;
    a policy rule that refuses it gives LOCAL, so the base filter's refusal
    (or its guard) decides.
    """
    forwarding = FORWARDING[s.name]
    default = _notify(forwarding.spec.placement)
    # Cases that end where the default does change nothing.
    cases = [(c.when, _notify(c.spec.placement)) for c in forwarding.cases]
    while cases and cases[-1][1] == default:
        cases.pop()
    steps: list[tuple[tuple[Arg, ...], Outcome]] = []
    for when, outcome in _policy_steps(s):
        if outcome is not Outcome.ALLOW:
            steps.append((when, LOCAL))
            continue
        steps += [((*when, *case_when), then) for case_when, then in cases]
        steps.append((when, default))
    *rules, (last_when, otherwise) = steps
    assert last_when == (), s.name  # the policy's last step has no conditions
    if not rules:
        return Decision(Policy.ALLOW if otherwise is LOCAL else Policy.UNSUPPORTED, "forward")
    return Decision(
        Policy.LIMITED, "forward", tuple(Rule(w, o) for w, o in rules), otherwise=otherwise
    )


def program() -> bpf.Program:
    table = [Syscall(s.nr, s.name, decision(s)) for s in SYSCALLS]
    compiled = bpf.compile_program(NAME, filter_action, table=table)
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
    skip = check_arch.jf + len(gate)
    assert skip <= 255, "the kill path moved out of a conditional jump's reach"
    insns[1] = bpf.Insn(check_arch.code, 0, skip, check_arch.k)
    return bpf.Program(NAME, (insns[0], insns[1], *gate, *insns[2:]))
