"""Who may hold a connection to the agent, and how much a user may send at once.

Counts connections per user (uid from SO_PEERCRED) and in all, and the bytes
of one user's frames being received.  A client over a limit gets one Refused
line and is closed; the agent itself never runs out of descriptors or memory
because of one user.
"""

from __future__ import annotations

from collections import Counter

from mosix.home_agent.connection import Peer
from mosix.home_agent.limits import ROOT_RESERVE, AgentLimits


class Admission:
    def __init__(self, limits: AgentLimits, connections: int) -> None:
        self.limits = limits
        self.connections = connections  # the usable total (see limits.usable_connections)
        self.open = 0
        self.by_uid: Counter[int] = Counter()
        self.inflight: Counter[int] = Counter()

    def admit(self, peer: Peer) -> str | None:
        """Count a new connection of ``peer``; the refusal line when it is over a limit."""
        users_total = self.connections - min(ROOT_RESERVE, self.connections // 4)
        if self.open >= (self.connections if peer.is_root else users_total):
            return f"the node agent has too many connections ({self.open}): try again later"
        if not peer.is_root and self.by_uid[peer.uid] >= self.limits.connections_per_user:
            return (
                f"too many connections to the node agent from user {peer.uid} "
                f"(at most {self.limits.connections_per_user})"
            )
        self.open += 1
        self.by_uid[peer.uid] += 1
        return None

    def leave(self, peer: Peer) -> None:
        self.open -= 1
        self.by_uid[peer.uid] -= 1
        if self.by_uid[peer.uid] <= 0:
            del self.by_uid[peer.uid]

    def take_inflight(self, uid: int, size: int) -> bool:
        """Room for a frame of ``size`` bytes from ``uid`` (False: over its share)."""
        if uid != 0 and self.inflight[uid] + size > self.limits.inflight_per_user:
            return False
        self.inflight[uid] += size
        return True

    def give_inflight(self, uid: int, size: int) -> None:
        self.inflight[uid] -= size
        if self.inflight[uid] <= 0:
            del self.inflight[uid]
