"""The partition's queue, on the node that keeps it: the lowest-numbered live node of
the partition (mosix.queue.partition.keeper_of).

Every node's agent relays its queued mosruns here (mosix.queue.relay), one
authenticated cluster connection per job (QueueEnter), kept open while the job
waits and while it runs: its end, or a Release on it, frees the job's slots.
The keeper orders the jobs with :class:`mosix.queue.queue.Queue` and starts each
on the first node of the partition with the slots, the -P and the -m it needs
(mosix.queue.partition.choose_node), answering Go with that node.

Nothing is kept on disk here: the jobs' own nodes hold them (their mosruns stay
connected there) and re-announce them, with ticket, priority and place, to
whichever node keeps the queue next; a keeper that starts waits SETTLE_SECONDS
for them before it starts anything (from when it finds itself the keeper), so
that order holds across keepers.

Those announcements come on a connection per job, in no order, so a node's
free slots are never taken from them alone: every node's load vector lists its
jobs that the queue started, where, with their slots (mosix.queue.partition), and
the keeper counts those too.  It starts nothing until it has heard from every
node of the partition (or [cluster] dead_after has passed, when the silent ones
count as down) and while any live node of the partition takes another node as
the keeper (that one may still start jobs, whose slots no vector shows yet).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from mosix.cluster.nodemap import Node
from mosix.cluster.peers import Cluster
from mosix.cluster.stream import PeerStream, PeerUnavailable
from mosix.home_agent.connection import Peer
from mosix.home_agent.listing import Chunks, parts
from mosix.home_agent.refusal import Refusal
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
    QueueListing,
    QueuePlace,
    Refused,
    Release,
)
from mosix.queue.partition import (
    PROMISE_SECONDS,
    NodeRoom,
    choose_node,
    keeper_named,
    keeper_of,
    rooms_of,
    started_in,
)
from mosix.queue.queue import GRACE_SECONDS, Queue, QueuedJob
from mosix.queue.requests import MAX_TICKET, QueueOrders

log = logging.getLogger("mosixd")
SETTLE_SECONDS = 3.0  # a new keeper waits this long for the nodes to re-announce their jobs
TICK_SECONDS = 1.0  # memory and load change without a message: look again this often
SEND_TIMEOUT = 10.0


@dataclass
class Entry:
    """A job of the partition's queue and the connection of the node that waits for it."""

    job: QueuedJob
    stream: PeerStream | None
    movable: bool
    running_on: int = 0  # the node it was started on (0: still queued)
    started: float = 0.0  # monotonic, when it was started here (its -m is promised)
    ended: trio.Event = field(default_factory=trio.Event)  # Release, or its node's end


class QueueKeeper:
    def __init__(self, cluster: Cluster, default_priority: int, own_slots: int) -> None:
        self.cluster = cluster
        self.queue = Queue(default_priority)
        self.own_slots = own_slots
        self.entries: dict[int, Entry] = {}  # ticket -> entry, queued or running
        self.began = time.monotonic()  # when this node last became the keeper
        self.was_keeping = False
        self.released: dict[tuple[int, int], float] = {}  # (node, ticket) -> when it ended
        self.disagreeing: int | None = None  # a node that takes another keeper (logged once)
        self.wakeup = trio.Event()
        self.requests = QueueOrders(default_priority, self.queue, self, self.changed)

    # ------------------------------------------------------------ scheduling

    def changed(self) -> None:
        self.wakeup.set()

    def keeping(self) -> bool:
        """Whether this node keeps the queue now; becoming the keeper starts its settling."""
        keeping = keeper_of(self.cluster) == self.cluster.me.number
        if keeping and not self.was_keeping:
            self.began = time.monotonic()
        self.was_keeping = keeping
        return keeping

    def settled(self) -> bool:
        return self.settling_left() <= 0

    def settling_left(self) -> float:
        """Seconds until this keeper has waited SETTLE_SECONDS for the nodes' jobs and
        has heard from every node of its partition (or waited dead_after for them: the
        silent ones are down by then, as everywhere)."""
        elapsed = time.monotonic() - self.began
        left = SETTLE_SECONDS - elapsed
        if self.unheard():
            left = max(left, self.cluster.config.dead_after - elapsed)
        return left

    def unheard(self) -> list[int]:
        """The other nodes of this partition that this agent has never had a load vector
        from (one heard from and silent since is down: its jobs are not its slots')."""
        if self.cluster.admin.isolated:
            return []
        heard = self.cluster.heard_from()
        me = self.cluster.me
        return [
            n.number
            for n in self.cluster.nodes
            if n.partition == me.partition and n.number != me.number and n.number not in heard
        ]

    def agreed(self) -> bool:
        """Whether every live node of the partition takes this one as the keeper."""
        me = self.cluster.me
        for number, vector in self.cluster.loads().items():
            node = self.cluster.nodes.by_number(number)
            if number == me.number or node is None or node.partition != me.partition:
                continue
            named = keeper_named(vector)
            if named != me.number:
                if self.disagreeing != number:
                    log.info(
                        "partition queue: node %d takes node %s as the keeper: nothing starts",
                        number,
                        named,
                    )
                self.disagreeing = number
                return False
        self.disagreeing = None
        return True

    async def run(self) -> None:
        while True:
            with trio.move_on_after(TICK_SECONDS):
                await self.wakeup.wait()
            self.wakeup = trio.Event()
            if not self.keeping() or not self.settled() or not self.agreed():
                continue
            await self.start_what_fits()

    def rooms(self) -> dict[int, NodeRoom]:
        """The partition's nodes with the slots held there: by the jobs this keeper
        knows of, and by those the nodes' load vectors report started (not yet heard
        of here, or ended too recently for the vector to show it)."""
        rooms = rooms_of(self.cluster, self.own_slots)
        now = time.monotonic()
        known: set[tuple[int, int]] = set()
        for ticket, entry in self.entries.items():
            if not entry.running_on:
                continue
            known.add((entry.job.node, ticket))
            room = rooms.get(entry.running_on)
            if room is not None:
                room.hold(entry.job.parallel, entry.job.memory_mb, now - entry.started)
        forget_before = now - 2 * self.cluster.config.dead_after
        self.released = {k: t for k, t in self.released.items() if t >= forget_before}
        for number, vector in self.cluster.loads().items():
            if number not in rooms:  # not alive, or of another partition
                continue
            for started in started_in(vector):
                key = (started.home, started.ticket)
                room = rooms.get(started.node)
                if room is not None and key not in known and key not in self.released:
                    room.hold(started.parallel, 0, PROMISE_SECONDS)
        return rooms

    async def start_what_fits(self) -> None:
        """Strict order: the first job that fits nowhere holds the others back."""
        rooms = self.rooms()
        now = time.time()
        for job in self.queue.ordered():
            entry = self.entries.get(job.ticket)
            if entry is None or entry.running_on:  # gone or started while we sent a Go
                continue
            if entry.stream is None:  # its node lost touch: keep its place a while
                if job.lost_since is not None and now - job.lost_since < GRACE_SECONDS:
                    break
                self.forget(job.ticket)
                continue
            if self.cluster.admin.isolated and job.node != self.cluster.me.number:
                continue  # its node sees this one down, and will announce it elsewhere
            node = choose_node(job, entry.movable, rooms)
            if node is None or not self.keeping():
                break
            rooms[node].hold(job.parallel, job.memory_mb, 0.0)
            await self.start(entry, node, "turn")

    async def start(self, entry: Entry, node: int, reason: str) -> None:
        job = entry.job
        self.queue.remove(job.ticket)
        entry.running_on, entry.started = node, time.monotonic()
        log.info(
            "partition queue: job %d (node %d pid %d) starts on node %d: %s",
            job.ticket,
            job.node,
            job.pid,
            node,
            reason,
        )
        if not await self.send(entry, Go(reason=reason, ticket=job.ticket, node=node)):
            self.forget(job.ticket)

    def forget(self, ticket: int) -> None:
        self.queue.remove(ticket)
        entry = self.entries.pop(ticket, None)
        if entry is not None:
            entry.ended.set()
        self.changed()

    async def send(self, entry: Entry, msg: Go | Abort | Queued | QueuePlace) -> bool:
        if entry.stream is None:
            return False
        try:
            with trio.fail_after(SEND_TIMEOUT):
                await entry.stream.send(msg)
            return True
        except (PeerUnavailable, trio.TooSlowError, trio.BrokenResourceError, OSError):
            return False

    # ------------------------------------------------ QueueRequests' runner

    async def start_job(self, job: QueuedJob, reason: str) -> None:
        """mosq run: now, on the node whose mosrun waits."""
        entry = self.entries.get(job.ticket)
        if entry is not None and not entry.running_on:
            await self.start(entry, job.node, reason)

    async def abort_job(self, job: QueuedJob, reason: str) -> None:
        """-q jobs are killed; -Q jobs bypass the queue and run (where they wait)."""
        entry = self.entries.get(job.ticket)
        if entry is None or entry.running_on:
            return
        if job.mode == "Q":
            await self.start(entry, job.node, reason)
            return
        await self.send(entry, Abort(reason=reason, ticket=job.ticket))
        self.forget(job.ticket)

    # ------------------------------------------------------------ inbound

    async def enter(self, stream: PeerStream, msg: QueueEnter, peer: Node) -> None:
        """A node's queued job (the handler of QueueEnter)."""
        problem = self.refusal(msg, peer)
        if problem is not None:
            await stream.send(Refused(error=problem))
            return
        while not msg.ticket and not msg.running_on and self.keeping() and not self.settled():
            await trio.sleep(max(0.0, self.settling_left()))  # its ticket after theirs
        entry = self.take_in(stream, msg)
        if not entry.running_on and not await self.send(entry, Queued(ticket=entry.job.ticket)):
            self.lose(entry, "it did not take its ticket")
            return
        self.changed()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.listen, entry, peer, nursery.cancel_scope)
            await entry.ended.wait()
            nursery.cancel_scope.cancel()

    async def listen(self, entry: Entry, peer: Node, scope: trio.CancelScope) -> None:
        """The job's node says Release, or its connection ends."""
        assert entry.stream is not None
        ticket = entry.job.ticket
        try:
            got = await entry.stream.receive()
            if isinstance(got, Release) and got.ticket == ticket:
                if entry.running_on:  # its node's vector may list it a while yet
                    self.released[(entry.job.node, ticket)] = time.monotonic()
                self.forget(ticket)
            else:
                self.lose(entry, f"'{got.OP}' on a queued job's connection")
        except (PeerUnavailable, ProtocolError) as e:
            self.lose(entry, f"node {peer.number}: {e}")
        finally:
            scope.cancel()

    def lose(self, entry: Entry, why: str) -> None:
        """The connection of ``entry`` ended without a Release."""
        ticket = entry.job.ticket
        if self.entries.get(ticket) is not entry:
            return
        if entry.running_on:
            self.forget(ticket)  # its node is gone: so are its slots
            return
        # keep its place a while: its node may come back with it
        entry.stream, entry.job.connected, entry.job.lost_since = None, False, time.time()
        log.info("partition queue: job %d of node %d lost: %s", ticket, entry.job.node, why)
        self.changed()

    def refusal(self, msg: QueueEnter, peer: Node) -> str | None:
        if msg.node != peer.number:
            return f"node {peer.number} may queue only its own jobs"
        if peer.partition != self.cluster.me.partition:
            return f"node {peer.number} is not in partition {self.cluster.me.partition}"
        if msg.mode not in ("q", "Q") or msg.parallel < 1 or msg.memory_mb < 0:
            return "a bad queued job"
        if not 0 <= msg.ticket <= MAX_TICKET or msg.priority < 0:
            return "a bad queued job"
        return None

    def take_in(self, stream: PeerStream, msg: QueueEnter) -> Entry:
        """The entry of ``msg``: a new one, or the one its node had here before."""
        old = self.entries.get(msg.ticket) if msg.ticket else None
        if old is not None and old.job.node == msg.node and old.job.pid == msg.pid:
            if old.stream is None:  # back: same place, same ticket
                old.stream, old.job.connected, old.job.lost_since = stream, True, None
                return old
            self.forget(msg.ticket)  # announced again: the node's new word wins
            old = None
        ticket = msg.ticket if msg.ticket and old is None else self.queue.new_ticket()
        job = QueuedJob(
            ticket=ticket,
            pid=msg.pid,
            start_ticks=None,
            uid=msg.uid,
            job=msg.job,
            priority=msg.priority,
            mode=msg.mode,
            memory_mb=msg.memory_mb,
            parallel=msg.parallel,
            command=msg.command,
            order=msg.order,
            node=msg.node,
        )
        entry = Entry(job, stream, msg.movable, msg.running_on)
        self.entries[ticket] = entry
        if msg.running_on:
            entry.started = time.monotonic()
            self.queue.next_ticket = max(self.queue.next_ticket, ticket + 1)
        else:
            self.queue.add(job)
        return entry

    async def ask(self, stream: PeerStream, msg: QueueAsk, peer: Node) -> None:
        """mosq from a node of the partition (the handler of QueueAsk)."""
        if peer.partition != self.cluster.me.partition:
            await stream.send(Refused(error=f"node {peer.number} is in another partition"))
            return
        who = Peer(pid=0, uid=msg.uid, gid=-1)
        try:
            if msg.listing:
                listing = self.requests.list_queue(
                    who, ListQueue(all_users=msg.all_users, count_only=msg.count_only)
                )
                await send_listing(stream, listing)
                return
            before = {t: (e.job.priority, e.job.order) for t, e in self.entries.items()}
            count = await self.requests.queue_action(
                who,
                QueueAction(
                    action=msg.action, ident=msg.ident, by_job=msg.by_job, priority=msg.priority
                ),
            )
            for ticket, entry in list(self.entries.items()):
                job = entry.job
                if ticket in before and before[ticket] != (job.priority, job.order):
                    place = QueuePlace(ticket=ticket, priority=job.priority, order=job.order)
                    await self.send(entry, place)
            await stream.send(Done(count=count))
        except Refusal as e:
            await stream.send(Refused(error=str(e)))


async def send_listing(stream: PeerStream, listing: QueueListing | Chunks) -> None:
    if isinstance(listing, QueueListing):
        await stream.send(listing)
        return
    before: list[object] | None = None
    for part in parts(listing.records):
        if before is not None:
            await stream.send(listing.frame(before, True))
        before = part
    await stream.send(listing.frame(before or [], False))
