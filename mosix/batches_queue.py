"""The hook where a line of -S waits for its turn in the queue (-q/-Q).

The manual: -S combines with the queue, -S setting an absolute upper limit on
simultaneous jobs while the queue decides how many may run; "no more than 10
jobs will be queued at any given moment".  The scheduler keeps that bound: a
line enters the queue only when fewer than :data:`QUEUED_MAX` lines wait in it
and the lines waiting plus the lines running stay within maxjobs.

The queue itself belongs to the node agent (not built yet).  The scheduler
speaks to it through :class:`TurnQueue`; tests pass a fake one.  Integration
still to do: the agent's queue needs a descriptor the runner can poll together
with its children's ends, so that a turn given while lines run is seen at
once (today the runner asks for turns without blocking whenever a line ends,
and blocks in :meth:`TurnQueue.turns` only when no line runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mosix.arguments import QueueRequest
from mosix.exits import EXIT_USAGE, Failure

QUEUED_MAX = 10


class TurnQueue(Protocol):
    def request(self, seq: int, line: bytes) -> None:
        """Line ``seq`` enters the queue and waits for its turn."""

    def turns(self, block: bool) -> Sequence[int]:
        """Lines whose turn has come; with ``block``, wait until there is at least one."""

    def withdraw(self, seq: int) -> None:
        """Line ``seq`` leaves the queue without running (mosrun is stopping)."""

    def finished(self, seq: int) -> None:
        """Line ``seq`` ran and ended: its resources are free again."""


def agent_queue(request: QueueRequest) -> TurnQueue:
    """The node agent's queue for lines of -S (pending: the agent is not built yet)."""
    del request
    raise Failure(
        "-S with -q/-Q: the queue is not available yet (needs the node agent)", EXIT_USAGE
    )
