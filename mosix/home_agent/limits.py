"""What one client of the agent may take: every limit in one place.

The agent serves every user of the node from one process (as root for the
system agent), so no client may take all of it: connections, descriptors,
queue entries, memory for the state it keeps, time before it says what it
wants.  The defaults are far above real use; ``[limits]`` in mosixd.toml
overrides them (mosix.node.config).
"""

from __future__ import annotations

import errno
import resource
from dataclasses import dataclass
from typing import AnyStr

FD_RESERVE = 64  # descriptors kept for the agent's own work (state, /proc, pidfds, children)
CONNECTIONS_FLOOR = 8  # connections allowed however low the descriptor limit is
ROOT_RESERVE = 16  # connections only root may take when users have filled the rest
COMMAND_KEPT = 64 * 1024  # characters of a command the agent keeps (and lists)
FLAGS_KEPT = 4096  # characters of a process's inherited option words it keeps
CUT_MARK = "..."
# out of descriptors or buffers: the agent waits a moment and tries again
SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


@dataclass
class AgentLimits:
    connections: int = 8192  # control connections at once (and no more than the fds allow)
    connections_per_user: int = 2048  # one user's connections (a queued mosrun holds one)
    queued_per_user: int = 1000  # one user's queue entries
    state_per_user: int = 16 * 1024 * 1024  # characters of commands kept for one user
    first_frame_seconds: float = 10.0  # a new connection must send its first request by then
    frame_seconds: float = 10.0  # a frame, once begun, must arrive whole within this time
    inflight_per_user: int = 64 * 1024 * 1024  # bytes of one user's frames being received


def usable_connections(limits: AgentLimits) -> int:
    """The connection limit this process can keep: the soft descriptor limit is
    raised to the hard one if need be, and FD_RESERVE stays for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if new > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
            except (OSError, ValueError):
                pass
    if soft == resource.RLIM_INFINITY:
        return limits.connections
    return max(CONNECTIONS_FLOOR, min(limits.connections, soft - FD_RESERVE))


def kept_words(words: list[AnyStr], budget: int) -> list[AnyStr]:
    """``words`` (text, or argv's bytes) cut to ``budget`` characters or bytes in all
    (the cut word ends in CUT_MARK)."""
    if sum(map(len, words)) <= budget:
        return words
    out: list[AnyStr] = []
    left = budget
    for word in words:
        if len(word) > left:
            mark = CUT_MARK.encode() if isinstance(word, bytes) else CUT_MARK
            out.append(word[:left] + mark)  # type: ignore[operator]
            break
        out.append(word)
        left -= len(word)
    return out


def words_size(words: list[str] | list[bytes]) -> int:
    return sum(map(len, words))
