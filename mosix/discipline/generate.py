"""The text of ``csrc/generated/seccomp_table.h``, ``forward_table.h`` and ``docs/SYSCALLS.md``.

The policy table (:mod:`mosix.discipline.policy`) and the forwarding table
(:mod:`mosix.discipline.forwarding`) are the sources; ``python -m
mosix.generate`` writes the files (:mod:`mosix.generate`).
"""

from __future__ import annotations

from mosix.codegen import c_banner, doc_banner
from mosix.discipline import bpf, forward_codegen, tid_calls
from mosix.discipline.policy import (
    BY_NAME,
    CHECKPOINT_NR,
    MANUAL_LIMITED,
    MANUAL_UNSUPPORTED,
    MODES,
    OUTCOMES_WITH_ARGUMENT,
    PRIVATE_DIR_CHECKS,
    PROBE_ERRNO_BASE,
    PROBE_NR,
    SYSCALLS,
    Outcome,
    Policy,
    Syscall,
)
from mosix.start_contract import INHERIT_ENV

HEADER = "csrc/generated/seccomp_table.h"
FORWARD_HEADER = "csrc/generated/forward_table.h"
DOC = "docs/SYSCALLS.md"
SOURCE = "mosix/discipline/policy.py"


def _k(k: bpf.K) -> str:
    return "0" if isinstance(k, str) else f"{k:#010x}"


def header_text() -> str:
    out = [
        c_banner(SOURCE),
        "/* seccomp_table.h - the policy table's BPF programs: change the table and regenerate. */",
        "#ifndef MOSIX_SECCOMP_TABLE_H",
        "#define MOSIX_SECCOMP_TABLE_H",
        "",
        "#include <linux/filter.h>",
        "",
        "/* Outcomes of the table (classifier results: outcome | argument index << 8). */",
    ]
    out += [f"#define MOSIX_OUTCOME_{o.name} {int(o)}" for o in Outcome]
    out += [
        "",
        f"#define MOSIX_PROBE_NR {PROBE_NR:#x}",
        f"#define MOSIX_PROBE_ERRNO_BASE {PROBE_ERRNO_BASE}",
        f"#define MOSIX_CHECKPOINT_NR {CHECKPOINT_NR:#x}",
        f"#define MOSIX_TRAP_MAGIC {bpf.TRAP_MAGIC:#x}",
        f'#define MOSIX_INHERIT_ENV "{INHERIT_ENV}"',
        f"#define MOSIX_SYSCALL_MAX {max(s.nr for s in SYSCALLS)}",
        "",
        "/* Instruction constants the C side fills in at run time. */",
        "enum mosix_patch_symbol {",
    ]
    out += [f"    MOSIX_PATCH_{name}," for name in bpf.PATCH_SYMBOLS]
    out += [
        "};",
        "",
        "struct mosix_patch_site {",
        "    unsigned short insn;",
        "    unsigned short symbol;",
        "};",
    ]
    for program in bpf.programs():
        out += ["", f"static const struct sock_filter {program.name}[] = {{"]
        out += [
            f"    {{{insn.code:#06x}, {insn.jt}, {insn.jf}, {_k(insn.k)}}},"
            + (f" /* {insn.k} */" if isinstance(insn.k, str) else "")
            for insn in program.insns
        ]
        out += ["};"]
        patches = program.patches()
        out += [f"static const struct mosix_patch_site {program.name}_patches[] = {{"]
        out += [f"    {{{i}, MOSIX_PATCH_{symbol}}}," for i, symbol in patches]
        if not patches:
            out += ["    {0xffff, 0}, /* none */"]
        out += ["};", f"#define {program.name.upper()}_PATCHES {len(patches)}"]
    out += [
        "",
        "/* mosrun -X: calls refused (EPERM) when they would make a name other than a regular",
        " * file in a private directory; an argument index, or -1 (the cwd; any type). */",
        "struct mosix_private_check {",
        "    int nr;",
        "    signed char dirfd_arg, path_arg, mode_arg;",
        "};",
        "static const struct mosix_private_check mosix_private_checks[] = {",
    ]
    for c in PRIVATE_DIR_CHECKS:
        dirfd = -1 if c.dirfd_arg is None else c.dirfd_arg
        mode = -1 if c.mode_arg is None else c.mode_arg
        out += [f"    {{{BY_NAME[c.name].nr}, {dirfd}, {c.path_arg}, {mode}}}, /* {c.name} */"]
    out += ["};"]
    out += tid_calls_text()
    out += ["", "static const char *const mosix_syscall_names[MOSIX_SYSCALL_MAX + 1] = {"]
    out += [f'    [{s.nr}] = "{s.name}",' for s in sorted(SYSCALLS, key=lambda s: s.nr)]
    out += ["};", "", "#endif", ""]
    return "\n".join(out)


def tid_calls_text() -> list[str]:
    """The calls that take a thread id (mosix/discipline/tid_calls.py)."""
    nr = {s.name: s.nr for s in SYSCALLS}
    out = [
        "",
        "/* Calls that take a thread id: translated after a recovery (tid_calls.py). */",
        f"#define MOSIX_TID_TRAP_MAGIC {tid_calls.TID_TRAP_MAGIC:#x}",
        "#define MOSIX_TID_NONE 0xff",
        "struct mosix_tid_call {",
        "    unsigned short nr;",
        "    unsigned char tid, tgid; /* argument indexes (MOSIX_TID_NONE: none) */",
        "    unsigned char which; /* only when argument 0 is this (MOSIX_TID_NONE: always) */",
        "};",
        "static const struct mosix_tid_call mosix_tid_calls[] = {",
    ]
    for c in tid_calls.TID_CALLS:
        tgid = "MOSIX_TID_NONE" if c.tgid is None else str(c.tgid)
        which = "MOSIX_TID_NONE" if c.which is None else str(c.which)
        out += [f"    {{{nr[c.name]}, {c.tid}, {tgid}, {which}}}, /* {c.name} */"]
    out += ["};", "static const unsigned short mosix_tid_always[] = {"]
    out += [f"    {nr[name]}, /* {name} */" for name in tid_calls.TID_ALWAYS]
    out += ["};"]
    return out


# ------------------------------------------------------------------------ doc

_OUTCOME_TEXT = {
    Outcome.ALLOW: "allowed",
    Outcome.PIN: "pinned",
    Outcome.ENOSYS: "ENOSYS",
    Outcome.EPERM: "EPERM",
    Outcome.UNSUPPORTED: "unsupported",
    Outcome.FIXUP_PRIVATE: "mapped MAP_PRIVATE instead (shim); ENOSYS without the shim",
    Outcome.SELF_ONLY: "allowed if arg{on} is the caller's pid, else unsupported",
    Outcome.STOP_TO_TSTP: "sent as SIGTSTP (shim); EPERM without the shim",
    Outcome.KEEP_SIGSYS: "succeeds without effect (shim)",
}


def _outcome(outcome: Outcome, on: int | None) -> str:
    text = _OUTCOME_TEXT[outcome]
    return text.format(on=on) if outcome in OUTCOMES_WITH_ARGUMENT else text


def _what(s: Syscall) -> str:
    d = s.decision
    if d.policy is not Policy.LIMITED:
        return _outcome(*d.outcome((0,) * 6))
    parts = [
        " and ".join(c.text() for c in rule.when) + " → " + _outcome(rule.then, rule.on)
        for rule in d.rules
    ]
    parts.append("otherwise → " + _outcome(d.otherwise, None))
    return "; ".join(parts)


def _manual(s: Syscall) -> str:
    if s.name in MANUAL_UNSUPPORTED:
        return "unsupported"
    if s.name in MANUAL_LIMITED:
        return "limited"
    return ""


def doc_text() -> str:
    rows = sorted(SYSCALLS, key=lambda s: s.nr)
    counts = {p: sum(1 for s in rows if s.decision.policy is p) for p in Policy}
    differ = [
        s
        for s in rows
        if (s.name in MANUAL_UNSUPPORTED and s.decision.policy is not Policy.UNSUPPORTED)
    ]
    out = [
        doc_banner(f"{SOURCE} and mosix/discipline/forwarding.py"),
        "",
        "# System calls under the MOSIX discipline",
        "",
        "Every x86-64 system call, what a program running under `mosrun` gets when it makes",
        "it, and why. The policy table in `mosix/discipline/policy.py` is the one definition;",
        "the seccomp filters in `csrc/generated/seccomp_table.h` and this page are generated",
        "from it.",
        "",
        "The discipline decides *where* a program may run, not *whether* it may run. Every",
        "call is carried, pinned or refused:",
        "",
        "* **allow** (carried): the call runs, and works the same after the process moves (it",
        "  runs where the process is, or is forwarded home).",
        "* **pinned**: the call runs natively; from then on the process stays on the node it is",
        "  on while what the call made or changed holds (threads, locked pages, shared maps, a",
        "  NUMA policy). `mosps -w` and `migrate`'s refusal say why (the node agent reads it from",
        "  /proc: `Threads`, `VmLck`, `maps`, `numa_maps`); when the thing is released (the",
        "  threads end, the pages are unlocked, the policy is reset) the pin lifts. A process",
        "  away from home that makes a pinned call is brought home first, and the call runs",
        "  there.",
        "* **unsupported** (refused): calls that would let a program escape the discipline or the",
        "  home model, or that administer the node. The unsupported-call mode decides: `-u`",
        "  (default) writes",
        "  `mosrun: PROG[PID]: unsupported system call NAME (NR): killed ...` to the program's",
        "  standard error and kills it with SIGKILL; `-e` makes the call fail with ENOSYS;",
        "  `-w` writes a warning and fails it with ENOSYS. In a multi-threaded process the mode",
        "  applies to the call of whichever thread makes it; -u kills the whole process.",
        "* **enosys**: always fails with ENOSYS (glibc then falls back, e.g. clone3 → clone;",
        "  features a kernel may be built without, e.g. memory protection keys).",
        "* **limited**: decided on the arguments; the rules are tried in order. `(int)argN`",
        "  means only the low 32 bits count (the kernel reads an `int`).",
        "",
        "Numbers not in the table (calls newer than it) fail with ENOSYS, as on an older",
        "kernel. A call that is not x86-64 (int 0x80 i386 calls, x32 numbers) kills the",
        "process (SIGSYS). How the outcomes are carried out (guard, shim, static programs) is",
        "described at the end of this page.",
        "",
        f"Totals: {counts[Policy.ALLOW]} allow, {counts[Policy.PINNED]} pinned, "
        f"{counts[Policy.UNSUPPORTED]} unsupported, "
        f"{counts[Policy.ENOSYS]} enosys, {counts[Policy.LIMITED]} limited.",
        "",
        "## Where this table differs from the manual",
        "",
        "The manual (mosrun(1), LIMITATIONS, 2009) lists calls that today's glibc makes in every",
        "program (futex, set_robust_list, madvise, clock_nanosleep, ...); killing those would",
        "make the discipline useless, and today's runtimes start threads, lock or share memory",
        "and set a NUMA policy (sort, xz, Python, numpy, node, ps). These calls are allowed,",
        "pinned (they run, and the process stays on its node while their effect holds) or",
        "enosys here; clone makes threads (pinned) beyond the manual's fork-like calls, mmap",
        "pins a writable MAP_SHARED instead of refusing it, and prctl allows every read-only",
        "option:",
        "",
        ", ".join(f"`{s.name}`" for s in differ) + ".",
        "",
        "## The table",
        "",
        "| nr | name | policy | what happens | why | manual | on a remote node |",
        "|---:|---|---|---|---|---|---|",
    ]
    for s in rows:
        what = _what(s).replace("|", "\\|")
        out.append(
            f"| {s.nr} | `{s.name}` | {s.decision.policy.value} | {what} | "
            f"{s.decision.reason.replace('|', chr(92) + '|')} | {_manual(s)} | "
            f"{forward_codegen.remote_text(s).replace('|', chr(92) + '|')} |"
        )
    out += [
        "",
        "## How the outcomes are carried out",
        "",
        "* The launcher (`mosix-exec`) installs the base filter before it executes the program,",
        "  so static programs and children of any depth are covered. Unsupported calls go to the",
        "  guard process (seccomp user notification), which applies the mode: message and SIGKILL,",
        "  ENOSYS, or message and ENOSYS. SELF_ONLY calls on the caller's own pid continue.",
        "* Dynamically linked programs also load the preload shim. Its filter acts only on calls",
        "  made from libc's code. Under `-e` unsupported calls fail with ENOSYS in the kernel (no",
        "  guard round trip, no signal). In every mode it traps (SIGSYS) what needs work inside",
        "  the process: the manual's mmap fix-up (MAP_SHARED without PROT_WRITE is mapped",
        "  MAP_PRIVATE; the manual applies it under -e only, but glibc maps its gconv cache so and",
        "  `grep` would be killed by default) and SIGSTOP → SIGTSTP. Under `-u` and `-w`",
        "  unsupported calls go to the guard, so a program cannot avoid being killed (or warned",
        "  about) by replacing the SIGSYS handler.",
        "* Static programs (and raw `syscall` instructions outside libc) get ENOSYS instead of the",
        "  mmap fix-up (glibc then reads the file instead), and EPERM instead of",
        "  SIGSTOP → SIGTSTP.",
        "* The mode is per process: the `-e`/`-u`/`-w` word of its `MOSIX_INHERIT` (what an inner",
        "  `mosrun` sets; the shim reads its environment, the guard `/proc/PID/environ`). Without",
        "  one, the outermost mosrun's mode applies: the base filter answers system call",
        f"  {PROBE_NR:#x} with errno {PROBE_ERRNO_BASE} + mode ({', '.join(MODES)}), which also",
        "  tells the shim that it runs under the discipline. An inner mosrun installs no second",
        "  filter (the kernel allows one listener per process); the outer guard serves it.",
        f"* System call {CHECKPOINT_NR:#x} is MOSIX's own: a program asks for its checkpoint",
        "  (`mosix/include/mosix_checkpoint.h`, `mosix.ckpt.trigger`, the shim's",
        "  `/proc/self/checkpoint*` files). The base filter hands it to the guard, which asks the",
        "  node agent and answers 0 when the checkpoint is written (1 in the recovered copy).",
        "  On a remote node the forward filter hands it to the copy's supervisor, which asks",
        "  the process's home through its agent: the same answers.",
        "* With private temporary directories (`mosrun -X`), the base filter starts with a",
        "  check that hands "
        + ", ".join(f"`{c.name}`" for c in PRIVATE_DIR_CHECKS)
        + " to the guard: in a",
        "  private directory, where only regular files may live, they fail with EPERM (mknod of",
        "  a regular file is allowed); elsewhere they continue. A rename or link into one from",
        "  another directory fails with EXDEV (each private directory is a mount of its",
        "  own).",
        "* Mapping special character devices (which the manual also refuses) is not detected:",
        "  a filter cannot see what a descriptor refers to.",
        "",
        *forward_codegen.DOC_SECTION,
    ]
    return "\n".join(out)


def outputs() -> dict[str, str]:
    return {
        HEADER: header_text(),
        FORWARD_HEADER: forward_codegen.header_text(),
        DOC: doc_text(),
    }
