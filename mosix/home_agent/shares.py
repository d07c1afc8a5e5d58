"""One user's share of the agent's memory: queue entries and kept commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mosix.home_agent.limits import AgentLimits, words_size
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.registry import Registry

if TYPE_CHECKING:
    from mosix.queue.queue import Queue


class UserShares:
    def __init__(self, limits: AgentLimits, queue: Queue, registry: Registry) -> None:
        self.limits = limits
        self.queue = queue
        self.registry = registry

    def check(self, uid: int, size: int, queue_entry: bool = False, pid: int = 0) -> None:
        """One user's queue entries and kept commands stay within the limits
        (a registration of ``pid`` replaces that pid's old one)."""
        if uid == 0:
            return
        limits = self.limits
        mine = [j for j in self.queue.jobs.values() if j.uid == uid]
        if queue_entry and len(mine) >= limits.queued_per_user:
            raise Refusal(f"user {uid} has {len(mine)} queued jobs: the most allowed")
        used = sum(words_size(j.command) for j in mine) + sum(
            words_size(r.command) + words_size(r.flags)
            for r in self.registry.registered.values()
            if r.uid == uid and r.pid != pid
        )
        if used + size > limits.state_per_user:
            raise Refusal(
                f"user {uid}'s queued and registered commands would take more than "
                f"{limits.state_per_user} characters of the node agent's memory"
            )
