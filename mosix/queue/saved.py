"""The queue's part of the agent's state file: the next ticket, the queued
entries and the jobs the queue started (mosix.home_agent.state saves it)."""

from __future__ import annotations

from typing import Any

from mosix.queue.queue import Capacity, Queue, QueuedJob, RunningJob, record
from mosix.sysinfo import proc_info


class SavedQueue:
    def __init__(self, queue: Queue, capacity: Capacity) -> None:
        self.queue = queue
        self.capacity = capacity

    def snapshot(self) -> dict[str, object]:
        return {
            "next_ticket": self.queue.next_ticket,
            "queued": [record(j) for j in self.queue.jobs.values()],
            "running": [record(r) for r in self.capacity.running.values()],
        }

    def restore(self, state: dict[str, Any], now: float, lost: set[int]) -> None:
        """Take back a previous agent's queue; adds to ``lost`` the tickets of queued
        jobs whose mosrun has not come back yet (as it goes: a malformed state,
        KeyError, TypeError or ValueError, leaves what was taken before it)."""
        self.queue.next_ticket = int(state["next_ticket"])
        for j in state["queued"]:
            job = QueuedJob(**j)
            if proc_info.alive(job.pid, job.start_ticks):
                job.connected, job.lost_since = False, now
                self.queue.add(job)
                lost.add(job.ticket)
        for r in state["running"]:
            run = RunningJob(**r)
            if run.uid < 0:  # a state file from before tickets were bound to users
                run.uid = proc_info.real_uid(run.pid) or 0
            self.capacity.running[run.ticket] = run

    def counts(self) -> tuple[int, int]:
        """Queued and running jobs."""
        return len(self.queue.jobs), len(self.capacity.running)
