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
job (-E/-M), because mosrun drops the group while it waits in the queue; and
the mosrun of a -M job another node's agent admitted (the batch host's pids).
Queries, signals and the administration verbs stay open to everyone.

The gate's other side is discovery: a process found in /proc is adopted only
with the admission of an admitted registration (mosix.home_agent.admission_key),
so a program started past the wrapper (the launcher run directly, the package's
modules) is not taken for MOSIX work: it runs, but is never moved, queued or
listed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from mosix.home_agent.connection import Peer
from mosix.home_agent.refusal import Refusal
from mosix.start_contract import site_group_refusal


@dataclass(frozen=True)
class SiteGroup:
    name: str = ""  # "": no site group, every user starts MOSIX work
    gid: int = -1
    key: bytes = field(default=b"", repr=False)  # admission_key.load(): the admissions' key

    def admission(self, uid: int, words: str) -> str:
        """What an admitted program carries for its tree (``ADMISSION_ENV``): bound to
        its user and its MOSIX_INHERIT words (``words``, as in its environment);
        "" without a site group."""
        if not self.name:
            return ""
        mac = hmac.new(self.key, f"{uid}\0{words}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def vouches_for(self, uid: int, words: str, admission: str) -> bool:
        """Whether a process found in /proc (its user, MOSIX_INHERIT and admission)
        descends from an admitted program, or is one just like it."""
        return not self.name or hmac.compare_digest(self.admission(uid, words), admission)

    def admits(self, peer: Peer) -> bool:
        return not self.name or peer.is_root or peer.gid == self.gid

    def check(self, peer: Peer, let_in_before: Callable[[], bool] = lambda: False) -> None:
        """Refuse a request that starts MOSIX work unless ``peer`` may start it
        (``let_in_before()``: the queue holds the peer's own admitted job; asked only
        when the peer lacks the group)."""
        if not self.admits(peer) and not let_in_before():
            raise Refusal(site_group_refusal(self.name))
