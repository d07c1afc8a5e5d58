"""Turn a parsed mosrun command line into the running program.

mosrun becomes the program: it execs in place, so the pid a shell sees
(``$!``), the parent, the terminal and the exit status are the program's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import NoReturn

from mosix import native_names
from mosix.arguments import (
    AmongCandidates,
    HostName,
    MosrunArgs,
    NodeNumbers,
    OnAddress,
    OnHost,
    OnNode,
    Unsupported,
    inherit,
    inherited_words,
    parse_inherited_words,
)
from mosix.discipline.launcher import NO_DISCIPLINE, exec_launcher, saved_environment
from mosix.exits import EXIT_USAGE, Failure

# Environment variable through which a disciplined process passes its inherited
# settings (-G -L -l -m -d -c -n -e -u -w -t -T -J) to children and inner mosruns.
INHERIT_ENV = "MOSIX_INHERIT"
THIS_NODE = 1  # node number of the embedded one-node default


def outer_settings(env: Mapping[str, str]) -> MosrunArgs:
    """The inherited settings of the mosrun this one runs under (if any)."""
    text = env.get(INHERIT_ENV, "")
    try:
        return parse_inherited_words(text.split())
    except Exception:  # a program may have put anything there
        return MosrunArgs()


def local_names() -> set[str]:
    host = socket.gethostname()
    return {"localhost", host, host.split(".")[0]}


def is_local_address(address: IPv4Address) -> bool:
    """Whether ``address`` is one of this machine's own (binding to it works)."""
    if address.is_loopback:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:  # EADDRNOTAVAIL: the address is not on this machine
            return False
    return True


def placement_problem(args: MosrunArgs) -> str | None:
    """Why ``args``' placement cannot be honoured on the one-node default."""
    p = args.placement
    here: bool
    match p:
        case OnHost(host=host):
            here = host in local_names()
        case OnAddress(address=address):
            here = is_local_address(address)
        case OnNode(node=node):
            here = node == THIS_NODE
        case AmongCandidates(candidates=candidates):
            here = any(
                (isinstance(c, NodeNumbers) and c.first <= THIS_NODE <= c.last)
                or (isinstance(c, HostName) and c.name in local_names())
                or (not isinstance(c, NodeNumbers | HostName) and is_local_address(c.first))
                for c in candidates
            )
        case _:
            here = True  # where the parent runs, home, or the best node: this one
    if here or args.force_elsewhere:
        return None
    return f"{p.option()}: no such node in this cluster (-F starts the program here instead)"


GATE_ENV = native_names.START_GATE_ENV


def make_gate() -> str:
    """A FIFO for the program to wait at while the agent places it (see preload_shim.c)."""
    directory = tempfile.mkdtemp(prefix="mosix-gate-")
    path = os.path.join(directory, "gate")
    os.mkfifo(path, 0o600)
    return path


def remove_gate(path: str) -> None:
    if not path:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))


def default_signals() -> None:
    """Undo Python's start-up changes that exec would otherwise pass on."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def drop_wrapper_group() -> None:
    """-g: called by the administrator's setgid wrapper; run as the real group."""
    gid = os.getgid()
    try:
        os.setresgid(gid, gid, gid)
    except OSError as e:
        raise Failure(f"-g: cannot drop the wrapper's group: {e.strerror}", EXIT_USAGE) from None


def run_program(args: MosrunArgs, keep_environment: bool) -> NoReturn:
    """Become the program under the settings of ``args`` (and of an outer mosrun).

    The C launcher installs the discipline (seccomp filter, guard, preload
    shim) and executes the program in place; see mosix.discipline.launcher.
    """
    env = dict(os.environ)
    effective = inherit(outer_settings(env), args)
    env[INHERIT_ENV] = " ".join(inherited_words(effective))
    if args.admin:
        drop_wrapper_group()
    default_signals()
    if keep_environment:
        env.update(saved_environment(env))
    mode = (effective.unsupported or Unsupported.KILL).value
    prog = "mosenv" if keep_environment else "mosrun"
    exec_launcher(mode, prog, effective.program[0], effective.argv(), env)


def under_discipline() -> bool:
    """True when this process runs under a seccomp filter (mode 2)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split()[1] == "2"
    except OSError:
        pass
    return False


def run_native(argv: Sequence[str]) -> NoReturn:
    """Run ``argv`` outside the discipline (the caller is not under it; see native_client)."""
    env = {k: v for k, v in os.environ.items() if k != INHERIT_ENV}
    default_signals()
    exec_launcher(NO_DISCIPLINE, "native", argv[0], argv, env)
