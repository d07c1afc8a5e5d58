"""What survives an agent's restart: registrations, the queue, the jobs it started,
mosctl's settings.

Saved to the run directory after each change (at most every SAVE_DELAY);
queued mosruns that lose the agent reconnect and present their ticket,
keeping their place.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cbor2
import trio

from mosix.home_agent.registry import Registration, Registry

if TYPE_CHECKING:
    from mosix.cluster.saved_settings import SavedSettings
    from mosix.queue.saved import SavedQueue

log = logging.getLogger("mosixd")
SETTINGS_KEY = "node_settings"  # mosctl's settings (mosix.cluster.saved_settings)
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
        self,
        path: Path,
        registry: Registry,
        queue: SavedQueue,
        changes: Changes,
        settings: SavedSettings | None = None,
    ) -> None:
        self.path = path
        self.registry = registry
        self.queue = queue  # the queue's part (mosix.queue.saved)
        self.changes = changes
        self.settings = settings  # mosctl's part (None: a one-node agent has none)

    def snapshot(self) -> dict[str, object]:
        return {
            "version": 1,
            "registered": [vars(r) for r in self.registry.registered.values()],
            **self.queue.snapshot(),
            **({SETTINGS_KEY: self.settings.snapshot()} if self.settings is not None else {}),
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
            for r in state["registered"]:
                self.registry.register(Registration(**r))
            self.queue.restore(state, now, lost)
        except (KeyError, TypeError, ValueError) as e:
            log.warning("ignoring malformed state file %s: %s", self.path, e)
        if self.settings is not None and SETTINGS_KEY in state:
            try:
                self.settings.restore(state[SETTINGS_KEY])
            except ValueError as e:
                log.warning("ignoring the node settings in %s: %s", self.path, e)
            else:
                log.info("restored the node settings: %s", self.settings.snapshot())
        self.registry.forget_dead()
        queued, running = self.queue.counts()
        log.info(
            "restored %d registrations, %d queued and %d running jobs",
            len(self.registry.registered),
            queued,
            running,
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
