"""What mosrun and the node agent agree on when a program starts.

* ``MOSIX_INHERIT``: the settings a disciplined process passes on to its
  children and inner mosruns (-G -L -l -m -d -c -n -e -u -w -t -T -J), read
  back by :func:`outer_settings` (and by the agent from /proc);
* ``MOSIX_ADMISSION``: what an agent with a site group (``[site] mosrun_group``)
  answered an admitted registration with, so that it adopts the program's
  descendants from /proc;
* the start gate: a FIFO a program placed elsewhere waits at (its path in
  ``MOSIX_START_GATE``, opened by the preload shim) until the agent has moved it;
* whether a placement option names this node of the one-node default.

Both sides import this module and nothing of each other's.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from ipaddress import IPv4Address

from mosix import native_names
from mosix.arguments import (
    AmongCandidates,
    HostName,
    MosrunArgs,
    NodeNumbers,
    OnAddress,
    OnHost,
    OnNode,
    parse_inherited_words,
)

# Environment variable through which a disciplined process passes its inherited
# settings (-G -L -l -m -d -c -n -e -u -w -t -T -J) to children and inner mosruns.
INHERIT_ENV = "MOSIX_INHERIT"
THIS_NODE = 1  # node number of the embedded one-node default
# The admission an agent with a site group gave the program (mosix.home_agent.admission_key):
# its descendants carry it, so that the agent adopts them from /proc.
ADMISSION_ENV = "MOSIX_ADMISSION"


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
    import tempfile  # only a placement elsewhere needs it: mosrun starts without

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


SITE_GROUP_REFUSAL = "MOSIX work starts here only through the site's mosrun wrapper"


def site_group_refusal(group: str) -> str:
    """The agent's one line to a caller without the site's group (``[site] mosrun_group``)."""
    return f"{SITE_GROUP_REFUSAL} (group '{group}')"


def is_site_group_refusal(error: str) -> bool:
    return error.startswith(SITE_GROUP_REFUSAL)
