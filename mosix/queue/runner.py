"""Running the queue: queued jobs start when slots and memory allow, and hold
their slots until their process ends."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from mosix.home_agent.connection import Connection
from mosix.home_agent.limits import SHORTAGE
from mosix.home_agent.replies import reply
from mosix.home_agent.state import Changes
from mosix.protocol import Abort, Go
from mosix.queue.queue import Capacity, Queue, QueuedJob
from mosix.sysinfo import proc_info

if TYPE_CHECKING:  # the relay leans on the cluster; mosix.node gives it
    from mosix.queue.relay import QueueRelay

log = logging.getLogger("mosixd")
TICK_SECONDS = 1.0  # how often memory-bound queued jobs are reconsidered


@dataclass
class Waiter:
    """A queued job's connection, waiting for Go or Abort."""

    conn: Connection
    job: QueuedJob


class QueueRunner:
    def __init__(
        self,
        queue: Queue,
        capacity: Capacity,
        changes: Changes,
        lost: set[int],
        nursery: trio.Nursery,
    ) -> None:
        self.queue = queue
        self.capacity = capacity
        self.changes = changes
        self.waiters: dict[int, Waiter] = {}  # ticket -> its connection
        self.lost = lost  # restored tickets whose mosrun has not come back yet
        self.nursery = nursery  # where running jobs are watched
        self.relay: QueueRelay | None = None  # a cluster: jobs wait in the partition's queue

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for run in list(self.capacity.running.values()):
            self.nursery.start_soon(self.watch_running, run.ticket, run.pid)
        task_status.started()
        while True:
            with trio.move_on_after(TICK_SECONDS):
                await self.changes.wakeup.wait()
            self.changes.wakeup = trio.Event()
            now = time.time()
            for ticket in list(self.lost):
                job = self.queue.jobs.get(ticket)
                if job is None or job.connected:
                    self.lost.discard(ticket)
                elif not proc_info.alive(job.pid, job.start_ticks):
                    self.queue.remove(ticket)
                    self.lost.discard(ticket)
                    self.changes.dirty.set()
            if self.capacity.free_slots() <= 0:
                continue  # nothing can start: spare sorting a long queue
            for job in self.queue.startable(self.capacity, now):
                await self.start_job(job, "turn")

    async def start_job(self, job: QueuedJob, reason: str) -> None:
        """Let a queued job run; it occupies its slots until its process ends."""
        self.queue.remove(job.ticket)
        if job.ticket not in self.capacity.running:
            self.capacity.take(job)
        waiter = self.waiters.pop(job.ticket, None)
        if waiter is not None:
            await reply(waiter.conn, Go(reason=reason, ticket=job.ticket))
        self.nursery.start_soon(self.watch_running, job.ticket, job.pid)
        self.changes.changed()
        log.info("started queued job %d (pid %d): %s", job.ticket, job.pid, reason)

    async def watch_running(self, ticket: int, pid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            pidfd = -1
            start = proc_info.start_ticks(pid)
            while e.errno in SHORTAGE and proc_info.alive(pid, start):
                await trio.sleep(TICK_SECONDS)  # no descriptor to wait on: look now and then
        if pidfd >= 0:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        self.capacity.release(ticket)
        self.changes.changed()

    async def abort_job(self, job: QueuedJob, reason: str) -> None:
        """-q jobs are killed; -Q jobs bypass the queue and run."""
        if job.mode == "Q":
            await self.start_job(job, reason)
            return
        self.queue.remove(job.ticket)
        waiter = self.waiters.pop(job.ticket, None)
        if waiter is not None:
            await reply(waiter.conn, Abort(reason=reason, ticket=job.ticket))
        self.changes.changed()

    def wait(self, conn: Connection, job: QueuedJob) -> None:
        """``conn`` waits for ``job``'s Go or Abort."""
        self.waiters[job.ticket] = Waiter(conn, job)

    def release(self, ticket: int, tickets: list[int]) -> None:
        """Only the connection that queued a ticket may release it."""
        if ticket not in tickets:
            return
        tickets.remove(ticket)
        if self.relay is not None:
            self.relay.release(ticket, tickets)
        self.waiters.pop(ticket, None)
        if self.queue.remove(ticket) is not None or ticket in self.capacity.running:
            self.capacity.release(ticket)
            self.changes.changed()

    def gone(self, conn: Connection, tickets: list[int]) -> None:
        """``conn`` closed: the jobs it still waited for leave the queue."""
        if self.relay is not None:
            self.relay.gone(conn)
        for ticket in tickets:
            waiter = self.waiters.get(ticket)
            if waiter is not None and waiter.conn is conn:
                del self.waiters[ticket]
                if self.queue.remove(ticket) is not None:
                    self.changes.changed()

    async def stop(self) -> None:
        """Orderly stop: -q jobs are killed, -Q jobs run (the manual's rule)."""
        if self.relay is not None:
            await self.relay.stop()
        for job in self.queue.ordered():
            await self.abort_job(job, "the node agent stopped")
