"""``[site] mosrun_group``: only the administrator's wrapper starts MOSIX work.

mosrun(1), FOR THE SYSTEM ADMINISTRATOR: a site may allow mosrun only through
its wrapper, a set-group-ID program of the site's group that checks the
parameters and executes ``mosrun -g``.  A Python mosrun cannot be made set-id,
so the node agent holds the line: the requests that start MOSIX work
(Register, Enqueue, StartBatch) are served only from a connection whose peer
(SO_PEERCRED: the effective ids at connect time) has the site's group as its
effective group, or is root.  A process the site let in before needs no
group: a queued mosrun presenting its ticket again (after an agent restart)
and, once the queue let it run, registering itself or submitting its batch
job (-E/-M), because mosrun drops the group while it waits in the queue.
Queries, signals and the administration verbs stay open to everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mosix.home_agent.connection import Peer
from mosix.home_agent.refusal import Refusal
from mosix.start_contract import site_group_refusal


@dataclass(frozen=True)
class SiteGroup:
    name: str = ""  # "": no site group, every user starts MOSIX work
    gid: int = -1

    def admits(self, peer: Peer) -> bool:
        return not self.name or peer.is_root or peer.gid == self.gid

    def check(self, peer: Peer, let_in_before: Callable[[], bool] = lambda: False) -> None:
        """Refuse a request that starts MOSIX work unless ``peer`` may start it
        (``let_in_before()``: the queue holds the peer's own admitted job; asked only
        when the peer lacks the group)."""
        if not self.admits(peer) and not let_in_before():
            raise Refusal(site_group_refusal(self.name))
