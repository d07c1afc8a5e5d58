"""A node's side of the partition's queue: its queued mosruns and its mosq, relayed to
the node that keeps the queue (mosix.queue.keeper).

A queued mosrun stays connected to its own node's agent, as on a lone node; the
agent keeps one authenticated connection to the keeper per job (QueueEnter) and
passes on the keeper's Queued, Go (with the node to start on: 0 when it is this
one) and Abort.  When that connection breaks, or another node becomes the keeper,
the job is announced again to the keeper of the moment, with its ticket, priority
and place (QueuePlace keeps them up to date), or as running on its node once it
started, so a new keeper rebuilds the queue from the nodes and nothing is lost or
started twice: a job starts only when its own node passes Go to its mosrun.
The node's load vector carries the keeper it follows and its started jobs
(``report``), so that a keeper counts their slots before their announcements come.

A test hook: an agent whose environment names a file in HOLD_ENV holds its
started jobs' announcements while that file exists, which forces the order in
which a new keeper hears of them (tests/test_partition_queue.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from mosix.cluster.peers import Cluster
from mosix.cluster.stream import PeerStream, PeerUnavailable
from mosix.home_agent.connection import Connection, Peer
from mosix.home_agent.limits import SHORTAGE
from mosix.home_agent.listing import Chunks
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.replies import reply
from mosix.protocol import (
    Abort,
    Done,
    Go,
    ListQueue,
    ProtocolError,
    QueueAction,
    QueueAsk,
    Queued,
    QueueEnter,
    QueueEntry,
    QueueListing,
    QueuePlace,
    Refused,
    Release,
)
from mosix.queue.partition import (
    QUEUE_KEEPER,
    QUEUE_STARTED,
    StartedJob,
    keeper_of,
    started_text,
)
from mosix.queue.queue import Queue, QueuedJob, RunningJob
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")
RETRY_FIRST, RETRY_MAX = 0.1, 1.0  # reaching the keeper again (it gives no event to wait for)
STOP_SECONDS = 2.0  # an orderly stop waits this long for the keeper to hear of its jobs
HOLD_ENV = "MOSIX_TEST_QUEUE_HOLD"  # the test hook (see above)
HOLD_POLL = 0.1  # how often a held announcement looks at the file again (no event to wait on)


@dataclass
class RelayedJob:
    conn: Connection | None  # its mosrun's (or -S runner's) connection (None: a restart's)
    tickets: list[int]  # that connection's tickets (mosix.home_agent.server)
    job: QueuedJob  # ticket: the one its mosrun knows (0 until the keeper gives one)
    movable: bool
    keeper_ticket: int = 0
    running_on: int = 0  # the node it was started on (0: still queued)
    told: trio.Event = field(default_factory=trio.Event)  # its mosrun has a ticket (or never will)
    ended: trio.Event = field(
        default_factory=trio.Event
    )  # withdrawn, released, or its process ended
    finished: trio.Event = field(default_factory=trio.Event)  # the keeper heard of the end


class QueueRelay:
    """``running`` is this node's record of its started jobs (the node's Capacity,
    kept in the agent's state file): a restarted agent announces them again."""

    def __init__(
        self,
        cluster: Cluster,
        nursery: trio.Nursery,
        running: dict[int, RunningJob],
        changed: Callable[[], None],
    ) -> None:
        self.cluster = cluster
        self.nursery = nursery
        self.running = running
        self.changed = changed
        self.jobs: list[RelayedJob] = []
        self.waiting = Queue()  # this node's jobs that wait (each user's share counts them)

    def resume(self) -> None:
        """A previous agent's started jobs whose processes live: they keep their slots."""
        for run in list(self.running.values()):
            if not run.node:
                continue
            if not proc_info.alive(run.pid, run.start_ticks):
                del self.running[run.ticket]
                continue
            job = QueuedJob(
                ticket=run.ticket,
                pid=run.pid,
                start_ticks=run.start_ticks,
                uid=run.uid,
                job=0,
                priority=0,
                mode="q",
                memory_mb=run.memory_mb,
                parallel=run.parallel,
                command=[],
            )
            relayed = RelayedJob(None, [], job, False, run.ticket, running_on=run.node)
            relayed.told.set()
            self.jobs.append(relayed)
            self.nursery.start_soon(self.follow, relayed, None)
            self.nursery.start_soon(self.watch, relayed)

    def started_here(self, ticket: int) -> Go | None:
        """The Go of ``ticket`` if it started before this agent did (its mosrun missed it)."""
        run = self.running.get(ticket) if ticket else None
        if run is None or not run.node:
            return None
        node = 0 if run.node == self.cluster.me.number else run.node
        return Go(reason="turn", ticket=ticket, node=node)

    def report(self) -> dict[str, int | str]:
        """This node's part of its load vector (mosix.queue.partition)."""
        started = (
            StartedJob(self.cluster.me.number, r.keeper_ticket, r.running_on, r.job.parallel)
            for r in self.jobs
            if r.running_on and r.keeper_ticket
        )
        return {QUEUE_KEEPER: keeper_of(self.cluster), QUEUE_STARTED: started_text(started)}

    # ------------------------------------------------ from the control socket

    def enter(self, conn: Connection, job: QueuedJob, movable: bool, tickets: list[int]) -> None:
        """A queued job of this node; its connection's jobs reach the keeper in order
        (a -S runner matches the Queued answers with its lines by their order)."""
        before = [r.told for r in self.jobs if r.conn is conn and not r.told.is_set()]
        relayed = RelayedJob(conn, tickets, job, movable, keeper_ticket=job.ticket)
        self.jobs.append(relayed)
        self.waiting.jobs[id(relayed)] = job
        self.nursery.start_soon(self.follow, relayed, before[-1] if before else None)

    def release(self, ticket: int, tickets: list[int]) -> None:
        for relayed in self.jobs:
            if relayed.tickets is tickets and relayed.job.ticket == ticket:
                relayed.ended.set()

    def gone(self, conn: Connection) -> None:
        """The connection closed: its jobs that did not start leave the queue."""
        for relayed in self.jobs:
            if relayed.conn is conn and conn is not None and not relayed.running_on:
                relayed.ended.set()

    async def stop(self) -> None:
        """Orderly stop: this node's -q jobs are killed, its -Q jobs run (the manual's
        rule, as on a lone node); the keeper hears that they left."""
        for relayed in list(self.jobs):
            if relayed.running_on or relayed.conn is None:
                continue
            job = relayed.job
            if job.mode == "Q":
                await reply(relayed.conn, Go(reason="the node agent stopped", ticket=job.ticket))
            else:
                await reply(relayed.conn, Abort(reason="the node agent stopped", ticket=job.ticket))
            relayed.ended.set()
        with trio.move_on_after(STOP_SECONDS):
            for relayed in list(self.jobs):
                if not relayed.running_on:
                    await relayed.finished.wait()

    # ------------------------------------------------------------ the keeper

    async def follow(self, relayed: RelayedJob, before: trio.Event | None) -> None:
        """Keep ``relayed`` in the keeper's queue until it ends."""
        try:
            if before is not None:
                await before.wait()
            delay = RETRY_FIRST
            while not relayed.ended.is_set():
                keeper = keeper_of(self.cluster)
                try:
                    stream = await self.cluster.open(keeper)
                except PeerUnavailable as e:
                    log.debug("partition queue: node %d: %s", keeper, e)
                else:
                    async with stream:
                        if await self.converse(relayed, stream, keeper):
                            return
                    delay = RETRY_FIRST
                with trio.move_on_after(delay):
                    await relayed.ended.wait()
                delay = min(delay * 2, RETRY_MAX)
        finally:
            relayed.told.set()
            relayed.finished.set()
            self.jobs.remove(relayed)
            self.waiting.jobs.pop(id(relayed), None)
            if relayed.running_on and self.running.pop(relayed.job.ticket, None) is not None:
                self.changed()

    def announcement(self, relayed: RelayedJob) -> QueueEnter:
        job = relayed.job
        return QueueEnter(
            node=self.cluster.me.number,
            uid=job.uid,
            pid=job.pid,
            job=job.job,
            priority=job.priority,
            mode=job.mode,
            memory_mb=job.memory_mb,
            parallel=job.parallel,
            command=job.command,
            movable=relayed.movable,
            ticket=relayed.keeper_ticket,
            order=job.order,
            running_on=relayed.running_on,
        )

    async def converse(self, relayed: RelayedJob, stream: PeerStream, keeper: int) -> bool:
        """One connection to the keeper; True when the job is done with, False when the
        job is to be announced again (the connection broke, or the keeper changed)."""
        done = False
        async with trio.open_nursery() as nursery:

            async def end_when_ended() -> None:
                nonlocal done
                await relayed.ended.wait()
                with contextlib.suppress(PeerUnavailable):
                    await stream.send(Release(ticket=relayed.keeper_ticket))
                done = True
                nursery.cancel_scope.cancel()

            async def end_when_keeper_changes() -> None:
                while keeper_of(self.cluster) == keeper:
                    await self.cluster.wait_for_change()
                nursery.cancel_scope.cancel()

            if relayed.running_on:
                await held()
            try:
                await stream.send(self.announcement(relayed))
            except PeerUnavailable:
                return False
            nursery.start_soon(end_when_ended)
            nursery.start_soon(end_when_keeper_changes)
            try:
                while True:
                    msg = await stream.receive()
                    if await self.answer(relayed, msg):
                        done = True
                        break
            except (PeerUnavailable, ProtocolError) as e:
                log.info("partition queue: job %d: node %d: %s", relayed.job.ticket, keeper, e)
            nursery.cancel_scope.cancel()
        return done

    async def answer(self, relayed: RelayedJob, msg: object) -> bool:
        """The keeper's word on ``relayed``; True when the job is done with."""
        job = relayed.job
        match msg:
            case Queued(ticket=ticket):
                relayed.keeper_ticket = ticket
                if not relayed.told.is_set():
                    job.ticket = job.ticket or ticket
                    relayed.tickets.append(job.ticket)
                    if relayed.conn is not None:
                        await reply(relayed.conn, Queued(ticket=job.ticket))
                    relayed.told.set()
            case QueuePlace(priority=priority, order=order):
                job.priority, job.order = priority, order
            case Go(reason=reason, node=node) if not relayed.running_on:
                relayed.running_on = node
                self.waiting.jobs.pop(id(relayed), None)
                self.running[job.ticket] = RunningJob(
                    job.ticket, job.pid, job.memory_mb, job.parallel, job.uid, job.start_ticks, node
                )
                self.changed()  # kept in the state file before its mosrun hears of it
                here = node == self.cluster.me.number
                go = Go(reason=reason, ticket=job.ticket, node=0 if here else node)
                if relayed.conn is not None:
                    await reply(relayed.conn, go)
                self.nursery.start_soon(self.watch, relayed)
            case Go():
                pass  # it runs already
            case Abort(reason=reason):
                if relayed.conn is not None:
                    await reply(relayed.conn, Abort(reason=reason, ticket=job.ticket))
                return True
            case Refused(error=error):
                if relayed.conn is not None:
                    await reply(relayed.conn, Refused(error=f"the partition's queue: {error}"))
                return True
            case _:
                raise ProtocolError("an unexpected answer from the keeper")
        return False

    async def watch(self, relayed: RelayedJob) -> None:
        """A started job holds its slots until its process ends (or it is released)."""
        pid = relayed.job.pid
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            start = relayed.job.start_ticks
            while e.errno in SHORTAGE and proc_info.alive(pid, start):
                await trio.sleep(RETRY_MAX)  # no descriptor to wait on: look now and then
            relayed.ended.set()
            return
        try:
            with trio.CancelScope() as scope:
                self.nursery.start_soon(cancel_when, relayed.ended, scope)
                await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        relayed.ended.set()

    # ------------------------------------------------------------ mosq

    async def ask(self, msg: QueueAsk) -> list[QueueEntry] | int:
        keeper = keeper_of(self.cluster)
        try:
            stream = await self.cluster.open(keeper)
            async with stream:
                await stream.send(msg)
                entries: list[QueueEntry] = []
                while True:
                    got = await stream.receive()
                    match got:
                        case QueueListing(entries=part, total=total, more=more):
                            entries += part
                            if not more:
                                return entries if not msg.count_only else total
                        case Done(count=count):
                            return count
                        case Refused(error=error):
                            raise Refusal(error)
                        case _:
                            raise ProtocolError(f"'{got.OP}' in answer to mosq")
        except (PeerUnavailable, ProtocolError) as e:
            raise Refusal(f"the partition's queue (node {keeper}) cannot be reached: {e}") from None

    async def listing(self, peer: Peer, msg: ListQueue) -> QueueListing | Chunks:
        got = await self.ask(
            QueueAsk(uid=peer.uid, all_users=msg.all_users, count_only=msg.count_only)
        )
        if isinstance(got, int):
            return QueueListing(entries=[], total=got)
        total = len(got)
        return Chunks(got, lambda part, more: QueueListing(part, total=total, more=more))

    async def action(self, peer: Peer, msg: QueueAction) -> int:
        got = await self.ask(
            QueueAsk(
                uid=peer.uid,
                listing=False,
                action=msg.action,
                ident=msg.ident,
                by_job=msg.by_job,
                priority=msg.priority,
            )
        )
        return got if isinstance(got, int) else len(got)


async def held() -> None:
    """The test hook: return once HOLD_ENV's file does not exist (at once without it)."""
    path = os.environ.get(HOLD_ENV)
    while path and os.path.exists(path):
        await trio.sleep(HOLD_POLL)


async def cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
