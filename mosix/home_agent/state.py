"""What survives an agent's restart: registrations, the queue, the jobs it started.

Saved to the run directory after each change (at most every SAVE_DELAY);
queued mosruns that lose the agent reconnect and present their ticket,
keeping their place.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cbor2
import trio

from mosix.home_agent.queue import Capacity, Queue, QueuedJob, RunningJob, record
from mosix.home_agent.registry import Registration, Registry
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")
SAVE_DELAY = 0.05  # state is saved at most this often
RETRY_SECONDS = 1.0  # a save that failed is tried again after this long


class Changes:
    """Something changed: the state is to be saved, the queue looked at again."""

    def __init__(self) -> None:
        self.dirty = trio.Event()
        self.wakeup = trio.Event()

    def changed(self) -> None:
        self.dirty.set()
        self.wakeup.set()


class SavedState:
    def __init__(
        self, path: Path, registry: Registry, queue: Queue, capacity: Capacity, changes: Changes
    ) -> None:
        self.path = path
        self.registry = registry
        self.queue = queue
        self.capacity = capacity
        self.changes = changes

    def snapshot(self) -> dict[str, object]:
        return {
            "version": 1,
            "next_ticket": self.queue.next_ticket,
            "registered": [vars(r) for r in self.registry.registered.values()],
            "queued": [record(j) for j in self.queue.jobs.values()],
            "running": [record(r) for r in self.capacity.running.values()],
        }

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            cbor2.dump(self.snapshot(), f)
        os.replace(tmp, self.path)

    def load(self) -> set[int]:
        """Take back the state of a previous agent on this run directory; returns
        the tickets of queued jobs whose mosrun has not come back yet."""
        lost: set[int] = set()
        try:
            with open(self.path, "rb") as f:
                state = cbor2.load(f)
        except FileNotFoundError:
            return lost
        except Exception as e:  # a damaged state file must not keep the agent down
            log.warning("ignoring unreadable state file %s: %s", self.path, e)
            return lost
        now = time.time()
        try:
            self.queue.next_ticket = int(state["next_ticket"])
            for r in state["registered"]:
                self.registry.register(Registration(**r))
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
        except (KeyError, TypeError, ValueError) as e:
            log.warning("ignoring malformed state file %s: %s", self.path, e)
        self.registry.forget_dead()
        log.info(
            "restored %d registrations, %d queued and %d running jobs",
            len(self.registry.registered),
            len(self.queue.jobs),
            len(self.capacity.running),
        )
        return lost

    async def saver(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Save after changes, at most every SAVE_DELAY and never more than 20% of the time."""
        task_status.started()
        while True:
            await self.changes.dirty.wait()
            self.changes.dirty = trio.Event()
            began = time.monotonic()
            try:
                self.save()
            except OSError as e:  # out of descriptors or space: try again later
                log.warning("cannot save the state to %s: %s", self.path, e.strerror)
                self.changes.dirty.set()
                await trio.sleep(RETRY_SECONDS)
            await trio.sleep(max(SAVE_DELAY, 4 * (time.monotonic() - began)))
