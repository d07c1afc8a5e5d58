"""The MOSIX queue: which queued job starts next, and when resources allow it.

Pure logic, no I/O: the agent feeds it requests and node facts and carries
out its decisions.  Order: lower priority number first; within a priority, the
order of arrival (tickets), adjusted by mosq advance/retard.  Strict order: a
job at the head that does not fit yet holds the others back, so a big job is
never starved by a stream of small ones.

The queue does not know about nodes: a :class:`Capacity` says what is free.
One queue can thus serve a whole cluster partition once Capacity is the
partition's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

GRACE_SECONDS = 30.0  # how long a lost entry (agent restarted) may hold the head


@dataclass(slots=True)
class QueuedJob:
    ticket: int
    pid: int
    start_ticks: int | None
    uid: int
    job: int
    priority: int
    mode: str  # "q" | "Q"
    memory_mb: int
    parallel: int
    command: list[bytes]  # argv (any bytes)
    order: float = 0.0
    connected: bool = True
    lost_since: float | None = None
    node: int = 0  # the node whose mosrun waits (the partition's queue; 0: this one)

    def key(self) -> tuple[int, float, int]:
        return (self.priority, self.order, self.ticket)


@dataclass(slots=True)
class RunningJob:
    ticket: int
    pid: int
    memory_mb: int
    parallel: int
    uid: int = -1  # whose ticket it is (-1: from an older state file, found at load)
    start_ticks: int | None = None  # of ``pid``: a reused pid is not the holder
    node: int = 0  # the partition's queue started it on that node (0: this node's queue)


@dataclass
class Capacity:
    """Resources for queued jobs: CPU slots and memory."""

    slots: int
    memory_available_mb: Callable[[], int]
    memory_in_use_mb: Callable[[int], int]  # pid -> its resident size
    running: dict[int, RunningJob] = field(default_factory=dict)

    def free_slots(self) -> int:
        return self.slots - sum(r.parallel for r in self.running.values())

    def outstanding_memory_mb(self) -> int:
        """Memory promised to running jobs (-m) that they have not taken yet."""
        return sum(
            max(0, r.memory_mb - self.memory_in_use_mb(r.pid))
            for r in self.running.values()
            if r.memory_mb
        )

    def fits(self, job: QueuedJob) -> bool:
        need = min(job.parallel, self.slots)  # a job wider than the node runs alone
        if need > self.free_slots():
            return False
        if job.memory_mb:
            free = self.memory_available_mb() - self.outstanding_memory_mb()
            if job.memory_mb > free:
                return False
        return True

    def take(self, job: QueuedJob) -> None:
        parallel = min(job.parallel, self.slots)
        self.running[job.ticket] = RunningJob(
            job.ticket, job.pid, job.memory_mb, parallel, job.uid, job.start_ticks
        )

    def release(self, ticket: int) -> None:
        self.running.pop(ticket, None)


class Queue:
    def __init__(self, default_priority: int = 50, next_ticket: int = 1) -> None:
        self.default_priority = default_priority
        self.next_ticket = next_ticket
        self.jobs: dict[int, QueuedJob] = {}

    def new_ticket(self) -> int:
        ticket = self.next_ticket
        self.next_ticket += 1
        return ticket

    def add(self, job: QueuedJob) -> None:
        if not job.order:
            job.order = float(job.ticket)
        self.next_ticket = max(self.next_ticket, job.ticket + 1)
        self.jobs[job.ticket] = job

    def remove(self, ticket: int) -> QueuedJob | None:
        return self.jobs.pop(ticket, None)

    def ordered(self) -> list[QueuedJob]:
        return sorted(self.jobs.values(), key=QueuedJob.key)

    def set_priority(self, ticket: int, priority: int) -> None:
        self.jobs[ticket].priority = priority

    def advance(self, ticket: int) -> None:
        """Ahead of every other job of the same priority."""
        job = self.jobs[ticket]
        same = [j.order for j in self.jobs.values() if j.priority == job.priority]
        job.order = min(same) - 1.0

    def retard(self, ticket: int) -> None:
        """Behind every other job of the same priority."""
        job = self.jobs[ticket]
        same = [j.order for j in self.jobs.values() if j.priority == job.priority]
        job.order = max(same) + 1.0

    def startable(self, capacity: Capacity, now: float) -> list[QueuedJob]:
        """Jobs to start now, in order; stops at the first that must wait."""
        out: list[QueuedJob] = []
        for job in self.ordered():
            if not job.connected:
                if job.lost_since is not None and now - job.lost_since < GRACE_SECONDS:
                    break  # its mosrun is reconnecting: keep its place
                continue
            if not capacity.fits(job):
                break
            capacity.take(job)
            out.append(job)
        return out


def record(obj: Any) -> dict[str, Any]:
    """The fields of a queue record as a plain map (for the state file)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
