"""The queue's requests: enqueue (with a ticket kept across restarts), mosq's
listing and actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mosix.home_agent.connection import Connection, Peer
from mosix.home_agent.limits import COMMAND_KEPT, kept_words, words_size
from mosix.home_agent.listing import Chunks
from mosix.home_agent.refusal import Refusal, check_owner, visible
from mosix.home_agent.shares import UserShares
from mosix.home_agent.state import Changes
from mosix.protocol import (
    QUEUE_ACTIONS,
    Enqueue,
    Go,
    ListQueue,
    Message,
    QueueAction,
    Queued,
    QueueEntry,
    QueueListing,
)
from mosix.queue.queue import Capacity, Queue, QueuedJob
from mosix.queue.runner import QueueRunner
from mosix.sysinfo import node_facts, proc_info

if TYPE_CHECKING:  # the relay leans on the cluster; it comes in through the constructor
    from mosix.queue.relay import QueueRelay

MAX_TICKET = 1 << 62  # a presented ticket above this is refused (tickets stay int64)


def queue_entry(job: QueuedJob, position: int) -> QueueEntry:
    return QueueEntry(
        ticket=job.ticket,
        pid=job.pid,
        uid=job.uid,
        job=job.job,
        priority=job.priority,
        mode=job.mode,
        memory_mb=job.memory_mb,
        parallel=job.parallel,
        command=job.command,
        position=position,
        node=job.node,
    )


class JobStarter(Protocol):
    """What carries out mosq's run and abort: this node's runner, or the keeper."""

    async def start_job(self, job: QueuedJob, reason: str) -> None: ...

    async def abort_job(self, job: QueuedJob, reason: str) -> None: ...


class QueueOrders:
    """mosq's listing and actions on a queue, and the priority rule."""

    def __init__(
        self, default_priority: int, queue: Queue, runner: JobStarter, changed: Callable[[], None]
    ) -> None:
        self.default_priority = default_priority
        self.queue = queue
        self.runner = runner
        self.changed = changed

    def check_priority(self, peer: Peer, priority: int | None) -> int:
        """The priority of a new entry: the site default unless given; better (lower)
        than the default only for root, as the administrator sets the default."""
        default = self.default_priority
        if priority is None:
            return default
        if priority < 0:
            raise Refusal(f"priority {priority}: must be 0 or more")
        if priority < default and not peer.is_root:
            raise Refusal(f"priority {priority}: only root may give a priority below {default}")
        return priority

    def list_queue(self, peer: Peer, msg: ListQueue) -> QueueListing | Chunks:
        if msg.all_users and not peer.is_root:
            raise Refusal("only root may list other users' queued jobs")
        if msg.count_only:
            count = sum(1 for j in self.queue.jobs.values() if msg.all_users or j.uid == peer.uid)
            return QueueListing(entries=[], total=count)
        ordered = self.queue.ordered()
        mine = [j for j in ordered if msg.all_users or j.uid == peer.uid]
        position = {j.ticket: i for i, j in enumerate(ordered, 1)}
        total = len(mine)
        return Chunks(
            (queue_entry(j, position[j.ticket]) for j in mine),
            lambda part, more: QueueListing(part, total=total, more=more),
        )

    async def queue_action(self, peer: Peer, msg: QueueAction) -> int:
        if msg.action not in QUEUE_ACTIONS:
            raise Refusal(f"unknown queue action '{msg.action}'")
        if msg.action == "cngpri" and (msg.priority is None or msg.priority < 0):
            raise Refusal("cngpri needs a priority of 0 or more")
        if msg.action == "cngpri":
            self.check_priority(peer, msg.priority)
        if msg.by_job:
            targets = [j for j in self.queue.ordered() if j.job == msg.ident]
            what = f"job {msg.ident}"
        else:
            targets = [j for j in self.queue.ordered() if j.pid == msg.ident]
            what = f"process {msg.ident}"
        if not targets:
            raise Refusal(f"{what} is not queued")
        if not all(visible(peer, j.uid) for j in targets):
            if msg.by_job:
                targets = [j for j in targets if visible(peer, j.uid)]
                if not targets:
                    raise Refusal(f"{what} has no queued processes of yours")
            else:
                raise Refusal(f"{what} belongs to another user")
        for job in targets:
            match msg.action:
                case "run":
                    await self.runner.start_job(job, "mosq run")
                case "abort":
                    await self.runner.abort_job(job, "aborted by mosq")
                case "cngpri":
                    assert msg.priority is not None
                    self.queue.set_priority(job.ticket, msg.priority)
                case "advance":
                    self.queue.advance(job.ticket)
                case "retard":
                    self.queue.retard(job.ticket)
        self.changed()
        return len(targets)


class QueueRequests(QueueOrders):
    def __init__(
        self,
        default_priority: int,
        queue: Queue,
        capacity: Capacity,
        runner: QueueRunner,
        shares: UserShares,
        changes: Changes,
        relay: QueueRelay | None = None,
    ) -> None:
        super().__init__(default_priority, queue, runner, changes.changed)
        self.capacity = capacity
        self.local_runner = runner
        self.shares = shares
        self.changes = changes
        self.relay = relay  # a cluster: the partition's queue, through its keeper

    def known_ticket(self, ticket: int) -> bool:
        """``ticket`` was given out and still stands: queued, or running (also after an
        agent restart).  Whose it is, ``enqueue`` checks (check_holder)."""
        return ticket != 0 and (ticket in self.capacity.running or ticket in self.queue.jobs)

    def runs_job_of(self, peer: Peer) -> bool:
        """The queue let the peer's own process run (it holds a running ticket)."""
        ticks = proc_info.start_ticks(peer.pid)
        return any(
            run.pid == peer.pid and run.uid == peer.uid and run.start_ticks in (None, ticks)
            for run in self.capacity.running.values()
        )

    def enqueue(self, conn: Connection, msg: Enqueue, tickets: list[int]) -> Message | None:
        """A queue entry for the caller's own process, or (``msg.ticket``) the entry it
        had before the agent restarted: a ticket is bound to the user and the process
        (pid and start time) that got it, and no other connection may use it."""
        peer = conn.peer
        uid = check_owner(peer, msg.pid)
        if not peer.is_root and msg.pid != peer.pid:
            raise Refusal(f"process {msg.pid} may queue only itself")
        if msg.mode not in ("q", "Q"):
            raise Refusal(f"queue mode must be 'q' or 'Q', not {msg.mode!r}")
        if msg.parallel < 1 or msg.memory_mb < 0:
            raise Refusal("-P must be at least 1 and -m not negative")
        total_mb = node_facts.memory_mb()[0]
        if msg.memory_mb > total_mb:
            raise Refusal(f"-m{msg.memory_mb}: no node has that much memory ({total_mb} MB here)")
        if not 0 <= msg.ticket <= MAX_TICKET:
            raise Refusal(f"ticket {msg.ticket} was never given out")
        start_ticks = proc_info.start_ticks(msg.pid)
        if self.relay is not None:  # the keeper answers (Queued, then Go or Abort)
            go = self.relay.started_here(msg.ticket)
            if go is not None:  # it started before an agent restart
                run = self.capacity.running[msg.ticket]
                self.check_holder(msg.ticket, (run.uid, run.pid, run.start_ticks), msg)
                return go
            command = kept_words(msg.command, COMMAND_KEPT)
            self.shares.check(uid, words_size(command), queue_entry=True)
            job = QueuedJob(
                ticket=msg.ticket,
                pid=msg.pid,
                start_ticks=start_ticks,
                uid=uid,
                job=msg.job,
                priority=self.check_priority(peer, msg.priority),
                mode=msg.mode,
                memory_mb=msg.memory_mb,
                parallel=msg.parallel,
                command=command,
            )
            self.relay.enter(conn, job, msg.movable, tickets)
            return None
        running = self.capacity.running.get(msg.ticket) if msg.ticket else None
        if running is not None:  # it started before an agent restart
            self.check_holder(msg.ticket, (running.uid, running.pid, running.start_ticks), msg)
            tickets.append(msg.ticket)
            return Go(reason="turn", ticket=msg.ticket)
        job = self.queue.jobs.get(msg.ticket) if msg.ticket else None
        if job is not None:  # back after an agent restart
            self.check_holder(msg.ticket, (job.uid, job.pid, job.start_ticks), msg)
            job.connected, job.lost_since = True, None
        else:
            priority = self.check_priority(peer, msg.priority)
            command = kept_words(msg.command, COMMAND_KEPT)
            self.shares.check(uid, words_size(command), queue_entry=True)
            job = QueuedJob(
                ticket=msg.ticket or self.queue.new_ticket(),
                pid=msg.pid,
                start_ticks=start_ticks,
                uid=uid,
                job=msg.job,
                priority=priority,
                mode=msg.mode,
                memory_mb=msg.memory_mb,
                parallel=msg.parallel,
                command=command,
            )
            if msg.ticket and msg.ticket < self.queue.next_ticket:
                # a ticket this agent does not know that is older than its newest one
                # (its entry was lost with the state): it keeps the number, not the place
                job.order = float(self.queue.new_ticket())
            self.queue.add(job)
        self.local_runner.wait(conn, job)
        tickets.append(job.ticket)
        self.changes.changed()
        return Queued(ticket=job.ticket)

    @staticmethod
    def check_holder(ticket: int, holder: tuple[int, int, int | None], msg: Enqueue) -> None:
        """``ticket`` is presented by the process that got it (same user, pid, start)."""
        uid, pid, start_ticks = holder
        same_start = start_ticks is None or start_ticks == proc_info.start_ticks(msg.pid)
        if msg.pid != pid or proc_info.real_uid(msg.pid) != uid or not same_start:
            raise Refusal(f"ticket {ticket} belongs to another process")

    async def listing(self, peer: Peer, msg: ListQueue) -> QueueListing | Chunks:
        """mosq list: this node's queue, or the partition's (from its keeper)."""
        if self.relay is not None:
            return await self.relay.listing(peer, msg)
        return self.list_queue(peer, msg)

    async def action(self, peer: Peer, msg: QueueAction) -> int:
        """mosq run, abort, cngpri, advance, retard: here, or at the partition's keeper."""
        if self.relay is not None:
            return await self.relay.action(peer, msg)
        return await self.queue_action(peer, msg)
