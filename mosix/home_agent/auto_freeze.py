"""Automatic freezing: the node's policy, ``[freeze] max_running`` (mosrun(1): "the
system-administrator usually sets an automatic-freezing policy").

Every ``[freeze] interval`` seconds the agent counts this node's MOSIX
processes that run at home (registered, state running, the kernel's R: a
process waiting for a call, stopped, or away does not count).  More than
``max_running``: the newest of them is frozen (one per look).  Fewer: the
first process frozen so continues.  Processes frozen by hand are left alone;
a process that cannot be frozen (threads, say) is not tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from mosix.home_agent.freezing import Freezer
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.registry import Registration
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")


class AutoFreezer:
    def __init__(
        self,
        freezer: Freezer,
        registrations: Callable[[], list[Registration]],
        max_running: int,
        interval: float,
    ) -> None:
        self.freezer = freezer
        self.registrations = registrations  # the node's live MOSIX processes
        self.max_running = max_running
        self.interval = interval
        self.frozen: list[Registration] = []  # frozen by this policy, first first
        self.unfreezable: set[tuple[int, int | None]] = set()  # (pid, start ticks)

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval)
            await self.look()

    def running(self) -> list[Registration]:
        return [
            reg
            for reg in self.registrations()
            if reg.state == "running"
            and not self.freezer.is_frozen(reg.pid)
            and proc_info.state_letter(reg.pid) == "R"
        ]

    async def look(self) -> None:
        self.frozen = [reg for reg in self.frozen if self.freezer.is_frozen(reg.pid)]
        running = self.running()
        if len(running) > self.max_running:
            candidates = [r for r in running if (r.pid, r.start_ticks) not in self.unfreezable]
            if candidates:
                await self.freeze(max(candidates, key=lambda r: (r.start_ticks or 0, r.pid)))
        elif len(running) < self.max_running and self.frozen:
            reg = self.frozen.pop(0)
            try:
                await self.freezer.resume(reg)
                log.info("process %d continued: fewer than %d run", reg.pid, self.max_running)
            except Refusal as e:
                log.warning("automatic freezing: %s", e)

    async def freeze(self, reg: Registration) -> None:
        try:
            await self.freezer.freeze(reg)
        except Refusal as e:
            self.unfreezable.add((reg.pid, reg.start_ticks))
            log.warning("automatic freezing: %s", e)
            return
        self.frozen.append(reg)
        log.info("process %d frozen: more than %d run", reg.pid, self.max_running)
