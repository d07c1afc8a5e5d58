"""mosixd: the node agent's server loop (trio).

Holds the registry and the queue, answers the control socket, starts queued
jobs when resources allow, and starts native programs for callers under the
discipline.  State that must survive a restart (registrations, queue, jobs it
started) is saved to the run directory after each change; queued mosruns that
lose the agent reconnect and present their ticket, keeping their place.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import cbor2
import trio

from mosix.agent_paths import SYSTEM_RUN_DIR, AgentPaths
from mosix.arguments import MosrunArgs
from mosix.display import shown
from mosix.home_agent import node_facts, proc_info
from mosix.home_agent.admission import Admission
from mosix.home_agent.checkpoints import CheckpointError, Checkpoints
from mosix.home_agent.cluster_services import ClusterServices
from mosix.home_agent.connection import Connection, Peer, peer_of
from mosix.home_agent.guard_watch import GuardWatch
from mosix.home_agent.limits import (
    COMMAND_KEPT,
    FLAGS_KEPT,
    AgentLimits,
    kept_words,
    usable_connections,
    words_size,
)
from mosix.home_agent.listing import parts
from mosix.home_agent.placement import NoPlace, placement_of
from mosix.home_agent.queue import Capacity, Queue, QueuedJob, RunningJob, record
from mosix.home_agent.registry import Registration, Registry
from mosix.launch import placement_problem
from mosix.protocol import (
    CHECKPOINT_ACTIONS,
    CHECKPOINT_ORIGINS,
    QUEUE_ACTIONS,
    Abort,
    Checkpoint,
    CheckpointSettings,
    DeputyHello,
    DeputyLost,
    Done,
    Enqueue,
    Exited,
    GetStatus,
    Go,
    GuardHello,
    ListNodes,
    ListProcesses,
    ListQueue,
    Message,
    Migrate,
    NodeFacts,
    Nodes,
    Processes,
    ProcessInfo,
    ProtocolError,
    QueueAction,
    Queued,
    QueueEntry,
    QueueListing,
    Refused,
    Register,
    Release,
    Shutdown,
    Started,
    StartNative,
    Status,
    encode_message,
)
from mosix.remote_agent.peers import Cluster
from mosix.remote_agent.settings import ClusterConfig

log = logging.getLogger("mosixd")
R = TypeVar("R")
TICK_SECONDS = 1.0  # how often memory-bound queued jobs are reconsidered
SAVE_DELAY = 0.05  # state is saved at most this often
SEND_TIMEOUT = 10.0  # a client that does not read its replies for this long is dropped
ACCEPT_PAUSE = 0.1  # out of descriptors or buffers: wait this long before accepting again
ACCEPT_LOG_EVERY = 60.0  # and say so in the log at most this often
SHORTAGE = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
PATH_MAX = 4096
MAX_TICKET = 1 << 62  # a presented ticket above this is refused (tickets stay int64)


class QueueChunks(NamedTuple):
    """A queue listing still to be built: jobs in order, their positions, the count.

    Entries are built while the frames go out, so the client decodes the first
    frames while the agent still builds the later ones."""

    jobs: list[QueuedJob]
    position: dict[int, int]
    total: int


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
    )


class Refusal(Exception):
    """A request that cannot be done; the text goes back to the client."""


@dataclass
class AgentConfig:
    node: int = 1
    name: str = field(default_factory=node_facts.host_name)
    default_priority: int = 50
    queue_slots: int = field(default_factory=node_facts.cpu_count)
    checkpoint_minute: float = 60.0  # seconds in an -A minute (shorter in tests)
    speed: float = 1.0  # relative CPU speed ([node] speed), for load vectors
    cluster: ClusterConfig | None = None  # None: a one-node cluster
    limits: AgentLimits = field(default_factory=AgentLimits)


@dataclass
class Waiter:
    """A queued job's connection, waiting for Go or Abort."""

    conn: Connection
    job: QueuedJob


class Agent:
    def __init__(self, paths: AgentPaths, config: AgentConfig) -> None:
        self.paths = paths
        self.config = config
        self.registry = Registry(
            config.name,
            socket=str(paths.socket),
            private=os.geteuid() == 0 and paths.run_dir != SYSTEM_RUN_DIR,
        )
        self.queue = Queue(config.default_priority)
        self.capacity = Capacity(
            slots=config.queue_slots,
            memory_available_mb=lambda: node_facts.memory_mb()[1],
            memory_in_use_mb=proc_info.rss_mb,
        )
        self.waiters: dict[int, Waiter] = {}  # ticket -> its connection
        self.lost: set[int] = set()  # restored tickets whose mosrun has not come back yet
        self.wakeup = trio.Event()
        self.dirty = trio.Event()
        self.stopping = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.owner = os.geteuid()
        self.admission = Admission(config.limits, usable_connections(config.limits))
        self.accept_logged = -ACCEPT_LOG_EVERY
        self.checkpoints = Checkpoints(self.mosix_process, config.checkpoint_minute)
        self.guards = GuardWatch(self.registry.ours)
        self.checkpoints.persist = self.save
        self.cluster = (
            Cluster(config.cluster, config.speed, lambda: len(self.registry.registered))
            if config.cluster is not None
            else None
        )
        self.services = (
            ClusterServices(self.cluster, str(paths.socket), self.changed, self.mosix_processes)
            if self.cluster is not None
            else None
        )

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict[str, object]:
        return {
            "version": 1,
            "next_ticket": self.queue.next_ticket,
            "registered": [vars(r) for r in self.registry.registered.values()],
            "queued": [record(j) for j in self.queue.jobs.values()],
            "running": [record(r) for r in self.capacity.running.values()],
        }

    def save(self) -> None:
        tmp = self.paths.state.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            cbor2.dump(self.snapshot(), f)
        os.replace(tmp, self.paths.state)

    def load(self) -> None:
        """Take back the state of a previous agent on this run directory."""
        try:
            with open(self.paths.state, "rb") as f:
                state = cbor2.load(f)
        except FileNotFoundError:
            return
        except Exception as e:  # a damaged state file must not keep the agent down
            log.warning("ignoring unreadable state file %s: %s", self.paths.state, e)
            return
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
                    self.lost.add(job.ticket)
            for r in state["running"]:
                run = RunningJob(**r)
                if run.uid < 0:  # a state file from before tickets were bound to users
                    run.uid = proc_info.real_uid(run.pid) or 0
                self.capacity.running[run.ticket] = run
        except (KeyError, TypeError, ValueError) as e:
            log.warning("ignoring malformed state file %s: %s", self.paths.state, e)
        self.registry.forget_dead()
        log.info(
            "restored %d registrations, %d queued and %d running jobs",
            len(self.registry.registered),
            len(self.queue.jobs),
            len(self.capacity.running),
        )

    def changed(self) -> None:
        self.dirty.set()
        self.wakeup.set()

    async def saver(self) -> None:
        """Save after changes, at most every SAVE_DELAY and never more than 20% of the time."""
        while True:
            await self.dirty.wait()
            self.dirty = trio.Event()
            began = time.monotonic()
            try:
                self.save()
            except OSError as e:  # out of descriptors or space: try again later
                log.warning("cannot save the state to %s: %s", self.paths.state, e.strerror)
                self.dirty.set()
                await trio.sleep(TICK_SECONDS)
            await trio.sleep(max(SAVE_DELAY, 4 * (time.monotonic() - began)))

    # ------------------------------------------------------ scheduling

    async def scheduler(self) -> None:
        assert self.nursery is not None
        for run in list(self.capacity.running.values()):
            self.nursery.start_soon(self.watch_running, run.ticket, run.pid)
        while True:
            with trio.move_on_after(TICK_SECONDS):
                await self.wakeup.wait()
            self.wakeup = trio.Event()
            now = time.time()
            for ticket in list(self.lost):
                job = self.queue.jobs.get(ticket)
                if job is None or job.connected:
                    self.lost.discard(ticket)
                elif not proc_info.alive(job.pid, job.start_ticks):
                    self.queue.remove(ticket)
                    self.lost.discard(ticket)
                    self.dirty.set()
            if self.capacity.free_slots() <= 0:
                continue  # nothing can start: spare sorting a long queue
            for job in self.queue.startable(self.capacity, now):
                await self.start_job(job, "turn")

    async def start_job(self, job: QueuedJob, reason: str) -> None:
        """Let a queued job run; it occupies its slots until its process ends."""
        assert self.nursery is not None
        self.queue.remove(job.ticket)
        if job.ticket not in self.capacity.running:
            self.capacity.take(job)
        waiter = self.waiters.pop(job.ticket, None)
        if waiter is not None:
            await self.reply(waiter.conn, Go(reason=reason, ticket=job.ticket))
        self.nursery.start_soon(self.watch_running, job.ticket, job.pid)
        self.changed()
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
        self.changed()

    # -------------------------------------------------------- requests

    async def handle(self, conn: Connection) -> None:
        """One client's requests, until it closes the connection.  Whatever it sends,
        the worst it gets is one Refused line and the end of its connection."""
        tickets: list[int] = []
        limits = self.config.limits
        first: float | None = trio.current_time() + limits.first_frame_seconds
        try:
            while True:
                try:
                    msg = await conn.receive(first)
                except ProtocolError as e:
                    await self.reply(conn, Refused(error=f"bad request: {e}"))
                    return
                except trio.TooSlowError:
                    what = "no request" if first is not None else "no whole frame"
                    seconds = limits.first_frame_seconds if first else limits.frame_seconds
                    await self.reply(conn, Refused(error=f"{what} within {seconds:g} s"))
                    return
                if msg is None:
                    return
                first = None
                try:
                    reply = await self.dispatch(conn, msg, tickets)
                except Refusal as e:
                    reply = Refused(error=str(e))
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    raise
                except Exception as e:
                    where = e.__traceback__
                    while where is not None and where.tb_next is not None:
                        where = where.tb_next
                    line = f"{where.tb_frame.f_code.co_filename}:{where.tb_lineno}" if where else ""
                    log.error(
                        "request '%s' of pid %d (uid %d) failed: %s: %s (%s)",
                        msg.OP,
                        conn.peer.pid,
                        conn.peer.uid,
                        type(e).__name__,
                        e,
                        line,
                    )
                    await self.reply(conn, Refused(error=f"internal error: {type(e).__name__}"))
                    return
                if reply is not None:
                    await self.reply(conn, reply)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            for ticket in tickets:
                waiter = self.waiters.get(ticket)
                if waiter is not None and waiter.conn is conn:
                    del self.waiters[ticket]
                    if self.queue.remove(ticket) is not None:
                        self.changed()
            conn.close()
            self.admission.leave(conn.peer)

    async def reply(self, conn: Connection, msg: Message) -> None:
        """Send ``msg``; a client that does not read within SEND_TIMEOUT is dropped.
        A reply too large for a frame becomes a Refused line."""
        if isinstance(msg, Refused):
            msg = Refused(error=" ".join(msg.error.split()))  # one line, always
        try:
            encode_message(msg)
        except ProtocolError as e:
            log.error("reply '%s' to pid %d not sent: %s", msg.OP, conn.peer.pid, e)
            msg = Refused(error=f"the answer is too large to send: {e}")
        with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            with trio.move_on_after(SEND_TIMEOUT) as scope:
                await conn.send(msg)
            if scope.cancelled_caught:
                log.warning("dropping pid %d: it does not read its replies", conn.peer.pid)
                conn.sock.close()

    async def dispatch(self, conn: Connection, msg: Message, tickets: list[int]) -> Message | None:
        peer = conn.peer
        match msg:
            case Register():
                return self.register(peer, msg)
            case Enqueue():
                return self.enqueue(conn, msg, tickets)
            case Release():
                self.release(msg.ticket, tickets)
                return None
            case ListProcesses():
                await self.send_chunks(conn, self.list_processes(peer, msg))
                return None
            case ListQueue():
                await self.send_chunks(conn, self.list_queue(peer, msg))
                return None
            case QueueAction():
                return Done(count=await self.queue_action(peer, msg))
            case GetStatus():
                return Status(facts=self.facts())
            case Migrate():
                return await self.migrate(peer, msg)
            case DeputyHello():
                if self.services is None:
                    raise Refusal("this node has no cluster")
                await self.services.migrations.deputy_hello(conn, msg)
                return None
            case DeputyLost():
                if self.services is not None:
                    await self.services.migrations.deputy_lost(conn, msg)
                return None
            case ListNodes():
                return Nodes(nodes=self.cluster.listing() if self.cluster else [])
            case Checkpoint():
                return await self.checkpoint(peer, msg)
            case CheckpointSettings():
                return self.checkpoint_settings(peer, msg)
            case StartNative():
                await self.start_native(conn, msg)
                return None
            case GuardHello():
                return self.guards.hello(conn, msg, self.nursery)
            case Shutdown():
                if not peer.is_root and peer.uid != self.owner:
                    raise Refusal("only root or the agent's owner may stop the agent")
                self.stopping.set()
                return Done()
        raise Refusal(f"'{msg.OP}' is not a request")

    def check_owner(self, peer: Peer, pid: int) -> int:
        uid = proc_info.real_uid(pid)
        if uid is None:
            raise Refusal(f"no process {pid}")
        if not peer.is_root and uid != peer.uid:
            raise Refusal(f"process {pid} belongs to another user")
        return uid

    def register(self, peer: Peer, msg: Register) -> Message:
        uid = self.check_owner(peer, msg.pid)
        if msg.checkpoint_limit < 0 or msg.checkpoint_interval < 0 or msg.checkpoint_next < 0:
            raise Refusal("negative checkpoint setting")
        if len(msg.checkpoint_file) > PATH_MAX or len(msg.gate) > PATH_MAX:
            raise Refusal(f"a file name longer than {PATH_MAX} characters")
        command = kept_words(msg.command, COMMAND_KEPT)
        flags = kept_words(msg.flags, FLAGS_KEPT)
        self.check_share(uid, words_size(command) + words_size(flags), pid=msg.pid)
        reg = Registration(
            pid=msg.pid,
            start_ticks=proc_info.start_ticks(msg.pid),
            uid=uid,
            job=msg.job,
            estimate_minutes=msg.estimate_minutes,
            memory_mb=msg.memory_mb,
            flags=flags,
            command=command,
            ckpt_file=msg.checkpoint_file,
            ckpt_taken=msg.checkpoint_next,
            ckpt_limit=msg.checkpoint_limit,
            ckpt_interval=msg.checkpoint_interval,
        )
        answer: Message = Done()
        if msg.placement:
            answer = self.place(msg, reg)
            if isinstance(answer, Refused):
                return answer
        self.registry.register(reg)
        if self.nursery is not None:
            self.checkpoints.schedule(self.nursery, reg)
        self.changed()
        return answer

    def place(self, msg: Register, reg: Registration) -> Message:
        """Where a program with a placement option starts (Done(count=1): elsewhere)."""
        if self.services is not None:
            return self.services.place(msg, reg)
        try:  # a one-node cluster: the placement must name this node (or -F)
            placement = placement_of(msg.placement)
        except NoPlace as e:
            return Refused(error=str(e))
        problem = placement_problem(
            MosrunArgs(placement=placement, force_elsewhere=msg.force_elsewhere)
        )
        return Refused(error=problem) if problem else Done()

    async def migrate(self, peer: Peer, msg: Migrate) -> Message:
        self.check_owner(peer, msg.pid)
        reg = self.registry.adopt(msg.pid)
        if reg is None:
            raise Refusal(f"process {msg.pid} does not run under mosrun")
        # what pins it (threads, locks, shared maps) first: true with or without a cluster
        why = proc_info.stay_reason(msg.pid) if msg.target != "home" else ""
        if why:
            raise Refusal(f"process {msg.pid} cannot migrate: {why}")
        if self.services is None:
            raise Refusal(f"{msg.target}: this node has no cluster to migrate to")
        return await self.services.migrate(msg, reg)

    # ---------------------------------------------------- checkpoints

    def mosix_processes(self) -> list[Registration]:
        """Every live MOSIX process of this node, each with a registration."""
        found = (self.registry.adopt(pid) for pid in self.registry.discover())
        return [reg for reg in found if reg is not None]

    def mosix_process(self, pid: int) -> Registration:
        reg = self.registry.adopt(pid)
        if reg is None:
            raise CheckpointError(f"process {pid} does not run under mosrun")
        return reg

    async def checkpoint(self, peer: Peer, msg: Checkpoint) -> Message:
        if msg.action not in CHECKPOINT_ACTIONS or msg.origin not in CHECKPOINT_ORIGINS:
            raise Refusal(f"no such checkpoint request: {msg.action} ({msg.origin})")
        self.check_owner(peer, msg.pid)
        try:
            done = await self.checkpoints.take(msg.pid, msg.action)
        except CheckpointError as e:
            raise Refusal(str(e)) from None
        self.changed()
        return done

    def checkpoint_settings(self, peer: Peer, msg: CheckpointSettings) -> Message:
        self.check_owner(peer, msg.pid)
        try:
            reg = self.mosix_process(msg.pid)
        except CheckpointError as e:
            raise Refusal(str(e)) from None
        if (msg.limit is not None and msg.limit < 0) or (
            msg.interval is not None and msg.interval < 0
        ):
            raise Refusal("negative checkpoint setting")
        if msg.file is not None:
            if not msg.file or b"\0" in msg.file:
                raise Refusal("empty checkpoint file name")
            if len(msg.file) > PATH_MAX:
                raise Refusal(f"a file name longer than {PATH_MAX} characters")
            reg.ckpt_file, reg.ckpt_taken = msg.file, 0
        if msg.limit is not None:
            reg.ckpt_limit = msg.limit
        if msg.interval is not None:
            reg.ckpt_interval = msg.interval
            if self.nursery is not None:
                self.checkpoints.schedule(self.nursery, reg)
        self.changed()
        return Done()

    def enqueue(self, conn: Connection, msg: Enqueue, tickets: list[int]) -> Message:
        """A queue entry for the caller's own process, or (``msg.ticket``) the entry it
        had before the agent restarted: a ticket is bound to the user and the process
        (pid and start time) that got it, and no other connection may use it."""
        peer = conn.peer
        uid = self.check_owner(peer, msg.pid)
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
            self.check_share(uid, words_size(command), queue_entry=True)
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
        self.waiters[job.ticket] = Waiter(conn, job)
        tickets.append(job.ticket)
        self.changed()
        return Queued(ticket=job.ticket)

    @staticmethod
    def check_holder(ticket: int, holder: tuple[int, int, int | None], msg: Enqueue) -> None:
        """``ticket`` is presented by the process that got it (same user, pid, start)."""
        uid, pid, start_ticks = holder
        same_start = start_ticks is None or start_ticks == proc_info.start_ticks(msg.pid)
        if msg.pid != pid or proc_info.real_uid(msg.pid) != uid or not same_start:
            raise Refusal(f"ticket {ticket} belongs to another process")

    def check_priority(self, peer: Peer, priority: int | None) -> int:
        """The priority of a new entry: the site default unless given; better (lower)
        than the default only for root, as the administrator sets the default."""
        default = self.config.default_priority
        if priority is None:
            return default
        if priority < 0:
            raise Refusal(f"priority {priority}: must be 0 or more")
        if priority < default and not peer.is_root:
            raise Refusal(f"priority {priority}: only root may give a priority below {default}")
        return priority

    def check_share(self, uid: int, size: int, queue_entry: bool = False, pid: int = 0) -> None:
        """One user's queue entries and kept commands stay within the limits
        (a registration of ``pid`` replaces that pid's old one)."""
        if uid == 0:
            return
        limits = self.config.limits
        mine = [j for j in self.queue.jobs.values() if j.uid == uid]
        if queue_entry and len(mine) >= limits.queued_per_user:
            raise Refusal(f"user {uid} has {len(mine)} queued jobs: the most allowed")
        used = sum(words_size(j.command) for j in mine) + sum(
            words_size(r.command) + words_size(r.flags)
            for r in self.registry.registered.values()
            if r.uid == uid and r.pid != pid
        )
        if used + size > limits.state_per_user:
            raise Refusal(
                f"user {uid}'s queued and registered commands would take more than "
                f"{limits.state_per_user} characters of the node agent's memory"
            )

    def release(self, ticket: int, tickets: list[int]) -> None:
        """Only the connection that queued a ticket may release it."""
        if ticket not in tickets:
            return
        tickets.remove(ticket)
        self.waiters.pop(ticket, None)
        if self.queue.remove(ticket) is not None or ticket in self.capacity.running:
            self.capacity.release(ticket)
            self.changed()

    async def send_chunks(
        self, conn: Connection, listing: Processes | QueueListing | QueueChunks
    ) -> None:
        """A listing in frames that fit MAX_FRAME (``more`` on all but the last)."""
        if isinstance(listing, QueueChunks):
            jobs, position, total = listing
            entries = (queue_entry(j, position[j.ticket]) for j in jobs)
            await self.send_parts(
                conn, entries, lambda part, more: QueueListing(part, total=total, more=more)
            )
        elif isinstance(listing, QueueListing):
            await conn.send(listing)
        else:
            await self.send_parts(conn, listing.processes, Processes)

    async def send_parts(
        self, conn: Connection, records: Iterable[R], build: Callable[[list[R], bool], Message]
    ) -> None:
        before: list[R] | None = None
        for part in parts(records):
            if before is not None:
                await conn.send(build(before, True))
            before = part
        assert before is not None
        await conn.send(build(before, False))

    def visible(self, peer: Peer, uid: int) -> bool:
        return peer.is_root or uid == peer.uid

    def list_processes(self, peer: Peer, msg: ListProcesses) -> Processes:
        if msg.all_users and not peer.is_root:
            raise Refusal("only root may list other users' processes")
        if msg.uid is not None and msg.uid != peer.uid and not peer.is_root:
            raise Refusal("only root may list other users' processes")
        found = list(self.registry.discover().values())
        for job in self.queue.jobs.values():
            found.append(
                ProcessInfo(
                    pid=job.pid,
                    uid=job.uid,
                    job=job.job,
                    state="queued",
                    where="queue",
                    home=self.config.name,
                    started=0.0,
                    estimate_minutes=None,
                    memory_mb=job.memory_mb or None,
                    flags=[],
                    command=job.command,
                )
            )
        uid = msg.uid if msg.uid is not None else (None if msg.all_users else peer.uid)
        out = [
            p
            for p in found
            if (uid is None or p.uid == uid)
            and (msg.job is None or p.job == msg.job)
            and self.visible(peer, p.uid)
        ]
        out.sort(key=lambda p: p.pid)
        return Processes(processes=out)

    def list_queue(self, peer: Peer, msg: ListQueue) -> QueueListing | QueueChunks:
        if msg.all_users and not peer.is_root:
            raise Refusal("only root may list other users' queued jobs")
        if msg.count_only:
            count = sum(1 for j in self.queue.jobs.values() if msg.all_users or j.uid == peer.uid)
            return QueueListing(entries=[], total=count)
        ordered = self.queue.ordered()
        mine = [j for j in ordered if msg.all_users or j.uid == peer.uid]
        position = {j.ticket: i for i, j in enumerate(ordered, 1)}
        return QueueChunks(mine, position, len(mine))

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
        if not all(self.visible(peer, j.uid) for j in targets):
            if msg.by_job:
                targets = [j for j in targets if self.visible(peer, j.uid)]
                if not targets:
                    raise Refusal(f"{what} has no queued processes of yours")
            else:
                raise Refusal(f"{what} belongs to another user")
        for job in targets:
            match msg.action:
                case "run":
                    await self.start_job(job, "mosq run")
                case "abort":
                    await self.abort_job(job, "aborted by mosq")
                case "cngpri":
                    assert msg.priority is not None
                    self.queue.set_priority(job.ticket, msg.priority)
                case "advance":
                    self.queue.advance(job.ticket)
                case "retard":
                    self.queue.retard(job.ticket)
        self.changed()
        return len(targets)

    async def abort_job(self, job: QueuedJob, reason: str) -> None:
        """-q jobs are killed; -Q jobs bypass the queue and run."""
        if job.mode == "Q":
            await self.start_job(job, reason)
            return
        self.queue.remove(job.ticket)
        waiter = self.waiters.pop(job.ticket, None)
        if waiter is not None:
            await self.reply(waiter.conn, Abort(reason=reason, ticket=job.ticket))
        self.changed()

    def facts(self) -> NodeFacts:
        total, free = node_facts.memory_mb()
        return NodeFacts(
            node=self.config.node,
            name=self.config.name,
            cpus=node_facts.cpu_count(),
            speed_mhz=node_facts.cpu_speed_mhz(),
            load=node_facts.load_average(),
            mem_total_mb=total,
            mem_free_mb=free,
            queue_slots=self.capacity.slots,
            queue_running=len(self.capacity.running),
            queued=len(self.queue.jobs),
            processes=len(self.registry.discover()),
            **self.balancing_facts(),
        )

    def balancing_facts(self) -> dict[str, int]:
        balancer = self.services.balancer if self.services is not None else None
        if balancer is None:
            return {}
        return {"balance_rounds": balancer.rounds, "balance_moves": balancer.moves}

    async def start_native(self, conn: Connection, msg: StartNative) -> None:
        """Start ``msg.argv`` outside the discipline as the caller, with its fds 0-2."""
        fds = conn.take_fds()
        peer = conn.peer
        try:
            if len(fds) != 3:
                raise Refusal("native: expected the caller's standard input, output and error")
            if not msg.argv:
                raise Refusal("native: no program given")
            try:
                proc = subprocess.Popen(
                    msg.argv,
                    stdin=fds[0],
                    stdout=fds[1],
                    stderr=fds[2],
                    cwd=msg.cwd,
                    env=msg.env,
                    user=peer.uid,
                    group=peer.gid,
                    extra_groups=self.groups_of(peer.pid),
                    restore_signals=True,
                    close_fds=True,
                )
            except OSError as e:
                code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
                await self.reply(
                    conn,
                    Refused(error=f"{shown(msg.argv[0])}: {os.strerror(e.errno or 0)} [{code}]"),
                )
                return
        finally:
            for fd in fds:
                os.close(fd)
        await self.reply(conn, Started(pid=proc.pid))
        pidfd = os.pidfd_open(proc.pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        code = proc.wait()
        await self.reply(conn, Exited(code=code))

    def groups_of(self, pid: int) -> list[int]:
        try:
            with open(f"/proc/{pid}/status") as f:
                text = f.read()
            for line in text.splitlines():
                if line.startswith("Groups:"):
                    return [int(g) for g in line.split()[1:]]
        except (OSError, ValueError):
            pass
        return []

    # ------------------------------------------------------ lifecycle

    async def stop(self) -> None:
        """Orderly stop: -q jobs are killed, -Q jobs run (the manual's rule)."""
        for job in self.queue.ordered():
            await self.abort_job(job, "the node agent stopped")
        self.save()

    async def serve(
        self,
        listener: trio.socket.SocketType,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.load()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for reg in self.registry.registered.values():
                self.checkpoints.schedule(nursery, reg)
            nursery.start_soon(self.scheduler)
            nursery.start_soon(self.saver)
            nursery.start_soon(self.accept_loop, listener, nursery)
            if self.cluster is not None:
                await nursery.start(self.cluster.run)
            if self.services is not None:
                self.services.start(nursery)
                self.registry.where_of = self.services.where
                self.services.migrations.last_checkpoint = self.checkpoints.last_image
                self.checkpoints.away = self.services.away_checkpoints
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                nursery.start_soon(self.wait_signal, signals)
                task_status.started()
                await self.stopping.wait()
            await self.stop()
            log.info("stopped")
            nursery.cancel_scope.cancel()

    async def wait_signal(self, signals: AsyncIterator[int]) -> None:
        async for sig in signals:
            log.info("signal %d: stopping", sig)
            self.stopping.set()
            return

    async def accept_loop(self, listener: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        limits = self.config.limits
        while True:
            try:
                sock, _ = await listener.accept()
            except OSError as e:
                if e.errno in SHORTAGE:
                    self.accept_shortage(e)
                    await trio.sleep(ACCEPT_PAUSE)  # connections end and free what we lack
                    continue
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EPERM):
                    continue  # that client is gone (or a security module said no): the next one
                raise
            try:
                peer = peer_of(sock)
            except OSError:
                sock.close()
                continue
            refusal = self.admission.admit(peer)
            if refusal is not None:
                refuse_at_once(sock, refusal)
                self.accept_shortage(None, f"refused pid {peer.pid} (uid {peer.uid}): {refusal}")
                continue
            conn = Connection(
                sock,
                peer,
                limits.frame_seconds,
                room=lambda size, uid=peer.uid: self.admission.take_inflight(uid, size),
                done=lambda size, uid=peer.uid: self.admission.give_inflight(uid, size),
            )
            nursery.start_soon(self.handle, conn)

    def accept_shortage(self, error: OSError | None, what: str = "") -> None:
        """Say in the log that connections are refused or wait, at most every ACCEPT_LOG_EVERY."""
        now = time.monotonic()
        if now - self.accept_logged >= ACCEPT_LOG_EVERY:
            self.accept_logged = now
            if error is not None:
                what = f"cannot accept connections for now: {error.strerror}"
            log.warning("%s (said at most every %g s)", what, ACCEPT_LOG_EVERY)


def refuse_at_once(sock: trio.socket.SocketType, error: str) -> None:
    """One Refused line to a client that is not let in, then close (never blocks:
    a new connection's send buffer is empty)."""
    with contextlib.suppress(OSError):
        os.write(sock.fileno(), encode_message(Refused(error=error)))
    sock.close()


def bind_listener(paths: AgentPaths, shared: bool) -> trio.socket.SocketType:
    """The control socket; ``shared`` (system agent) lets every user connect."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.socket)
    plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    plain.bind(str(paths.socket))
    os.chmod(paths.socket, 0o666 if shared else 0o600)
    plain.listen(512)
    return trio.socket.from_stdlib_socket(plain)
