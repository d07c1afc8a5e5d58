"""mosq and frozen processes: a frozen process is listed with the queued jobs.

A frozen MOSIX process (mosix.home_agent.freezing: ``migrate PID freeze``, or
automatic freezing) waits, as a queued job does, to run again; ``mosq list``
shows it after the queued jobs with the state "frozen" (no place in the queue:
it is not started by the queue), and ``mosq run PID`` (or ``-j JOB``) continues
it as ``migrate PID continue`` does.  The queue's other actions (abort, cngpri,
advance, retard) do not apply to it: one line says so.
"""

from __future__ import annotations

import dataclasses
import itertools

from mosix.home_agent.connection import Peer
from mosix.home_agent.freezing import Freezer
from mosix.home_agent.listing import Chunks
from mosix.home_agent.refusal import Refusal, visible
from mosix.home_agent.registry import Registration, Registry
from mosix.protocol import Message, QueueAction, QueueEntry, QueueListing

FROZEN = "frozen"


class FrozenJobs:
    def __init__(self, registry: Registry, freezer: Freezer) -> None:
        self.registry = registry
        self.freezer = freezer

    def frozen(self) -> list[Registration]:
        return [r for r in self.registry.registered.values() if self.freezer.is_frozen(r.pid)]

    def entries(self, peer: Peer, all_users: bool) -> list[QueueEntry]:
        """The frozen processes ``mosq list`` (``listall``: every user's) shows."""
        return [
            QueueEntry(
                ticket=0,
                pid=reg.pid,
                uid=reg.uid,
                job=reg.job,
                priority=0,
                mode="",
                memory_mb=reg.memory_mb or 0,
                parallel=1,
                command=reg.command,
                position=0,
                state=FROZEN,
            )
            for reg in self.frozen()
            if all_users or reg.uid == peer.uid
        ]

    async def action(self, peer: Peer, msg: QueueAction) -> int:
        """mosq's action on the frozen processes ``msg`` names; how many (0: none is
        frozen, the queue's action then applies)."""
        if msg.by_job:
            targets = [r for r in self.frozen() if r.job == msg.ident and visible(peer, r.uid)]
        else:
            targets = [r for r in self.frozen() if r.pid == msg.ident]
            if targets and not visible(peer, targets[0].uid):
                raise Refusal(f"process {msg.ident} belongs to another user")
        if not targets:
            return 0
        if msg.action != "run":
            what = (
                f"job {msg.ident} has frozen processes"
                if msg.by_job
                else (f"process {msg.ident} is frozen")
            )
            raise Refusal(f"{what}, not queued: 'mosq run' continues a frozen process")
        for reg in targets:
            await self.freezer.resume(reg)
        return len(targets)


def with_frozen(listing: QueueListing | Chunks, frozen: list[QueueEntry]) -> QueueListing | Chunks:
    """The queue's listing followed by the ``frozen`` entries (``mosq count``, a bare
    QueueListing, counts queued jobs only)."""
    if not isinstance(listing, Chunks) or not frozen:
        return listing
    queued = listing

    def frame(part: list[QueueEntry], more: bool) -> Message:
        msg = queued.frame(part, more)
        if isinstance(msg, QueueListing):
            return dataclasses.replace(msg, total=msg.total + len(frozen))
        return msg

    return Chunks(itertools.chain(listing.records, frozen), frame)
