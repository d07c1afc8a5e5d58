"""Text generated from the forwarding table: ``csrc/generated/forward_table.h``, the doc column.

Called by :mod:`mosix.discipline.generate`; ``python -m mosix.generate`` writes the files.
"""

from __future__ import annotations

from mosix.codegen import c_banner
from mosix.discipline import bpf, forward_filter
from mosix.discipline.forwarding import (
    EINTR_AFTER_ANY_HANDLER,
    FCNTLS,
    FORWARDING,
    FWD_MAX_DATA,
    IOCTLS,
    PATH_MAX,
    STRUCTS,
    ArgSpec,
    Forwarding,
    Kind,
    Placement,
    SizeHow,
    Spec,
)
from mosix.discipline.policy import SYSCALLS, Syscall

MAX_CONDS = 2  # conditions of one case in C
# Constants and structures glibc's headers do not define (or define differently): not checked.
UNCHECKED_CONSTANTS = frozenset({"TCGETS2", "TCSETS2", "TCSETSW2", "TCSETSF2"})
UNCHECKED_STRUCTS = frozenset({"termios", "termios2", "ustat", "cachestat_range", "cachestat"})


def _arg(a: ArgSpec) -> str:
    flags = " | ".join(
        name for name, on in (("FWD_F_RET_SIZED", a.ret_sized), ("FWD_F_CLAMP", a.clamp)) if on
    )
    return (
        f"{{FWD_KIND_{a.kind.name}, {flags or 0}, FWD_SIZE_{a.size.how.name}, "
        f"{a.size.arg}, {a.size.mul}, {a.size.add}}}"
    )


def _entry(spec: Spec) -> str:
    args = ", ".join(_arg(a) for a in spec.args)
    return f"{{FWD_PLACE_{spec.placement.name}, {len(spec.args)}, {spec.error}, {{{args}}}}}"


def _k(k: bpf.K) -> str:
    assert not isinstance(k, str), "the forward filter has nothing to patch"
    return f"{k:#010x}"


def header_text() -> str:
    rows = sorted(SYSCALLS, key=lambda s: s.nr)
    size = max(s.nr for s in rows) + 1
    out = [
        c_banner("mosix/discipline/forwarding.py"),
        "/* forward_table.h - the forwarding table: change it and regenerate.",
        " * Read by csrc/forward/; the payload layout is in forward.h. */",
        "#ifndef MOSIX_FORWARD_TABLE_H",
        "#define MOSIX_FORWARD_TABLE_H",
        "",
        "#include <linux/filter.h>",
        "#include <stdint.h>",
        "",
        f"#define FWD_TABLE_SIZE {size}",
        f"#define FWD_TABLE_MAX_DATA {FWD_MAX_DATA}",
        f"#define FWD_PATH_MAX {PATH_MAX}",
        f"#define FWD_CASE_CONDS {MAX_CONDS}",
        "",
        "/* Placements (the same values as enum fwd_placement in forward.h). */",
    ]
    out += [f"#define FWD_PLACE_{p.name} {int(p)}" for p in Placement]
    out += ["", "/* Argument kinds. */", "#define FWD_KIND_NONE 0"]
    out += [f"#define FWD_KIND_{k.name} {int(k)}" for k in Kind]
    out += ["", "/* Where a buffer's size comes from. */"]
    out += [f"#define FWD_SIZE_{h.name} {int(h)}" for h in SizeHow]
    out += [
        "",
        "#define FWD_F_RET_SIZED 1u /* only min(size, ret * mul) bytes come back */",
        "#define FWD_F_CLAMP 2u     /* a size beyond FWD_MAX_DATA is clamped */",
        "",
        "struct fwd_arg {",
        "    uint8_t kind;     /* FWD_KIND_* */",
        "    uint8_t flags;    /* FWD_F_* */",
        "    uint8_t size_how; /* FWD_SIZE_* */",
        "    uint8_t size_arg; /* the argument a size comes from */",
        "    uint32_t mul;     /* FWD_SIZE_ARG: bytes per unit of the argument */",
        "    uint32_t add;     /* FWD_SIZE_CONST: the bytes; FWD_SIZE_ARG: added */",
        "};",
        "",
        "struct fwd_entry {",
        "    uint8_t placement; /* FWD_PLACE_* */",
        "    uint8_t nargs;",
        "    uint16_t error;    /* FWD_PLACE_UNFORWARDABLE: the errno to answer */",
        "    struct fwd_arg arg[6];",
        "};",
        "",
        "/* (args[arg] & mask) == value */",
        "struct fwd_cond {",
        "    uint8_t arg;",
        "    uint64_t mask;",
        "    uint64_t value;",
        "};",
        "",
        "/* The first case of a call whose conditions all hold decides; else the call's entry. */",
        "struct fwd_case {",
        "    uint8_t nconds;",
        "    struct fwd_cond cond[FWD_CASE_CONDS];",
        "    struct fwd_entry entry;",
        "};",
        "",
        "struct fwd_syscall {",
        "    uint8_t known;",
        "    uint16_t first_case;",
        "    uint16_t ncases;",
        "    struct fwd_entry entry;",
        "};",
        "",
        "static const struct fwd_case fwd_cases[] = {",
    ]
    first: dict[int, int] = {}
    count = 0
    for s in rows:
        f = FORWARDING[s.name]
        first[s.nr] = count
        for case in f.cases:
            assert 1 <= len(case.when) <= MAX_CONDS, s.name
            conds = ", ".join(f"{{{c.index}, {c.mask:#x}, {c.value:#x}}}" for c in case.when)
            out.append(
                f"    /* {s.name} {case.label} */ {{{len(case.when)}, {{{conds}}}, "
                f"{_entry(case.spec)}}},"
            )
            count += 1
    if count == 0:
        out.append("    {0, {{0, 0, 0}}, {0, 0, 0, {{0}}}},")
    out += ["};", "", "static const struct fwd_syscall fwd_syscalls[FWD_TABLE_SIZE] = {"]
    for s in rows:
        f = FORWARDING[s.name]
        out.append(
            f"    [{s.nr}] = {{1, {first[s.nr]}, {len(f.cases)}, {_entry(f.spec)}}}, /* {s.name} */"
        )
    out += ["};", ""]
    out += [
        "/* Whether the kernel restarts call nr after a handler with SA_RESTART (0: it",
        " * ends with EINTR whenever a handler runs; signal(7)). */",
        "static inline int fwd_table_restarts_after_handler(long nr)",
        "{",
        "    switch (nr) {",
    ]
    out += [f"    case {s.nr}: /* {s.name} */" for s in rows if s.name in EINTR_AFTER_ANY_HANDLER]
    out += ["        return 0;", "    default:", "        return 1;", "    }", "}", ""]
    prog = forward_filter.program()
    out += [
        "/* The forward filter: x86-64 only (else kill), the restorer's own calls (instruction",
        f" * pointer's high half {forward_filter.RESTORER_HIGH:#010x}) allowed, x32 killed, calls"
        " that do not run locally",
        " * (and numbers beyond the table) to the user-notification listener, and so are the",
        " * calls the guard answers at home (the unsupported-call mode); other refusals are",
        " * allowed here: the base filter refuses them. */",
        f"static const struct sock_filter {prog.name}[] = {{",
    ]
    out += [f"    {{{insn.code:#06x}, {insn.jt}, {insn.jf}, {_k(insn.k)}}}," for insn in prog.insns]
    out += ["};", ""]
    fast = forward_filter.program(fast=True)
    out += [
        "/* The fast variant, for a copy with the preload shim's SIGSYS handler: calls placed",
        " * at home trap (SECCOMP_RET_TRAP | FWD_TRAP_MAGIC) and the shim sends them over the",
        " * direct channels at FWD_DIRECT_FD down (FWD_DIRECT_MAX at most, one per thread);",
        " * its own sendto/recvfrom there (sixth argument FWD_DIRECT_MAGIC) are allowed.",
        " * Everything else as above. */",
        f"#define FWD_TRAP_MAGIC {forward_filter.FWD_TRAP_MAGIC:#x}",
        f"#define FWD_DIRECT_FD {forward_filter.DIRECT_FD}",
        f"#define FWD_DIRECT_MAX {forward_filter.DIRECT_MAX}",
        f"#define FWD_DIRECT_MAGIC {forward_filter.DIRECT_MAGIC:#x}",
        f"static const struct sock_filter {fast.name}[] = {{",
    ]
    out += [f"    {{{insn.code:#06x}, {insn.jt}, {insn.jf}, {_k(insn.k)}}}," for insn in fast.insns]
    out += ["};", ""]
    out += [
        "#ifdef FWD_CHECK_CONSTANTS",
        "/* forward_marshal.c checks the table's numbers against the system headers. */",
    ]
    for table in (IOCTLS, FCNTLS):
        for value, (name, _) in table.items():
            if name in UNCHECKED_CONSTANTS:
                continue
            out += [
                f"#ifdef {name}",
                f'_Static_assert((unsigned long)({name}) == {value:#x}ul, "{name}");',
                "#endif",
            ]
    for key, (ctype, nbytes) in STRUCTS.items():
        if key not in UNCHECKED_STRUCTS:
            out.append(f'_Static_assert(sizeof({ctype}) == {nbytes}, "{ctype}");')
    out += ["#endif", "", "#endif", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------ doc


def remote_text(s: Syscall) -> str:
    """The doc's "on a remote node" cell."""
    f: Forwarding = FORWARDING[s.name]
    if not f.cases:
        return f"`{f.spec.text()}`"
    # Cases with the same outcome on one line (their conditions exclude each other).
    groups: dict[str, list[str]] = {}
    for case in f.cases:
        condition = case.label or " and ".join(c.text() for c in case.when)
        groups.setdefault(case.spec.text(), []).append(condition)
    parts = [f"{', '.join(conditions)} → `{text}`" for text, conditions in groups.items()]
    parts.append(f"otherwise → `{f.spec.text()}`")
    return "; ".join(parts)


DOC_SECTION = [
    "## On a remote node",
    "",
    "A migrated process runs on another node as a restored copy; its home process stays",
    'as the *deputy*. The column "on a remote node" (from `mosix/discipline/forwarding.py`)',
    "says where each call runs there:",
    "",
    "* **local**: on the remote node (memory, signal handling, pure CPU, sleeps, timers).",
    "  Calls the discipline refuses get what they get at home: the supervisor applies",
    "  the unsupported-call mode (-u killed, -e ENOSYS, -w a message at home and ENOSYS).",
    "* **home(...)**: forwarded to the deputy, which executes it natively; the arguments",
    "  travel as listed: `val` as is (descriptors and pids are home ones), `path` a string",
    f"  of at most {PATH_MAX} bytes, `in`/`out`/`inout[size]` a buffer (`argN*M` bytes,",
    "  `*argN` the socklen_t it points to, `fd_set(argN)` the sets' bytes; `≤ret` only",
    "  what the result says comes back), `iov_in`/`iov_out` an iovec array, `msg_in`/",
    "  `msg_out` a msghdr (name, data and control data, whose descriptors are home ones),",
    "  `dropped` not sent (a signal mask for the remote's own signals). A null pointer",
    f"  stays null. At most {FWD_MAX_DATA // (1 << 20)} MiB of buffers travel each way: a",
    "  read or write (`clamped`) is cut short, any other larger buffer fails with E2BIG.",
    "* **time(...)**: reads home's clock, unless the process runs with `-t`. Programs read",
    "  the clocks through the vDSO, without a system call: the restorer of a copy without",
    "  `-t` makes the vDSO's `clock_gettime`, `gettimeofday`, `time` and `clock_getres` these",
    "  system calls (`csrc/common/vdso_time.h`); `getcpu` and `getrandom` stay local.",
    "* **bring home**: the process migrates home and the call runs there (fork, clone,",
    "  execve).",
    "* **file map**: mmap of a file, done by the supervisor.",
    "* **split**: sendmmsg, recvmmsg: the supervisor forwards one sendmsg or recvmsg per",
    "  message.",
    "* **unforwardable**: answered on the remote node with the errno shown (structures",
    "  with pointers inside, ioctl requests the table does not know).",
    "",
    "A process with private directories (`mosrun -X`) is the exception to `home(...)`: its",
    "calls on paths in them, and on descriptors of their files, run on the remote node,",
    "where the files are (the supervisor executes them, `csrc/remote/remote_private.h`),",
    "as do relative paths while its current directory is a private one; a poll, ppoll,",
    "select or pselect6 whose set mixes private and home descriptors is split between",
    "the two nodes (`csrc/remote/remote_private_poll.h`).",
    "",
]
