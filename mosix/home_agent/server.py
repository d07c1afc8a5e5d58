"""mosixd's control socket: each client's requests, until it closes its connection.

Every request goes to the part that answers it: a process about itself
(mosix.home_agent.process_requests), the queue (mosix.queue: requests, runner),
checkpoints (checkpoint_requests), listings and facts (status_requests), mosctl's
verbs (given by the node: mosix.node.administration),
``native`` (native_start), deputies (migration), guards (guard_watch).  Whatever a client sends, the
worst it gets is one Refused line and the end of its connection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from mosix.home_agent.admission import Admission
from mosix.home_agent.batch_submit import BatchSubmitter, without_cluster
from mosix.home_agent.checkpoint_requests import CheckpointRequests
from mosix.home_agent.connection import Connection, Peer
from mosix.home_agent.freezing import Freezer
from mosix.home_agent.frozen_jobs import FrozenJobs, with_frozen
from mosix.home_agent.guard_watch import GuardWatch
from mosix.home_agent.limits import AgentLimits
from mosix.home_agent.migration import Migrations
from mosix.home_agent.native_start import start_native
from mosix.home_agent.process_requests import ProcessRequests
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.replies import reply
from mosix.home_agent.site_group import SiteGroup
from mosix.home_agent.status_requests import StatusRequests, send_chunks
from mosix.protocol import (
    Checkpoint,
    CheckpointSettings,
    DeputyHello,
    DeputyLost,
    DeputyStop,
    Done,
    Enqueue,
    GetStatus,
    GuardHello,
    ListNodes,
    ListProcesses,
    ListQueue,
    Message,
    Migrate,
    NodeControl,
    ProtocolError,
    QueueAction,
    Refused,
    Register,
    Release,
    Shutdown,
    StartBatch,
    StartNative,
    Status,
)

if TYPE_CHECKING:  # the queue leans on the home side; it comes in through the constructor
    from mosix.queue.requests import QueueRequests
    from mosix.queue.runner import QueueRunner

log = logging.getLogger("mosixd")


class Server:
    def __init__(
        self,
        limits: AgentLimits,
        owner: int,
        admission: Admission,
        processes: ProcessRequests,
        queue: QueueRequests,
        runner: QueueRunner,
        checkpoints: CheckpointRequests,
        status: StatusRequests,
        migrations: Migrations | None,
        guards: GuardWatch,
        node_control: Callable[[Peer, NodeControl], Awaitable[Done]],
        stopping: trio.Event,
        freezer: Freezer,
        batches: BatchSubmitter | None = None,
        site: SiteGroup | None = None,
        hosted_mosrun: Callable[[int], bool] = lambda pid: False,
    ) -> None:
        self.limits = limits
        self.owner = owner  # the agent's user: it may stop the agent
        self.admission = admission
        self.processes = processes
        self.queue = queue
        self.runner = runner
        self.checkpoints = checkpoints
        self.status = status
        self.migrations = migrations  # None: a one-node cluster
        self.guards = guards
        self.node_control = node_control  # mosctl's verbs (mosix.node.administration)
        self.stopping = stopping  # set by Shutdown
        self.batches = batches  # mosrun -E/-M (None: a one-node cluster)
        self.freezer = freezer  # frozen processes' deputies say hello to it first
        self.frozen_jobs = FrozenJobs(processes.registry, freezer)  # mosq shows them
        self.site = site or SiteGroup()  # [site] mosrun_group: who may start MOSIX work
        self.hosted_mosrun = hosted_mosrun  # the mosrun of a -M job another node's gate let in

    async def handle(self, conn: Connection) -> None:
        """One client's requests, until it closes the connection.  Whatever it sends,
        the worst it gets is one Refused line and the end of its connection."""
        tickets: list[int] = []
        limits = self.limits
        first: float | None = trio.current_time() + limits.first_frame_seconds
        try:
            while True:
                try:
                    msg = await conn.receive(first)
                except ProtocolError as e:
                    await reply(conn, Refused(error=f"bad request: {e}"))
                    return
                except trio.TooSlowError:
                    what = "no request" if first is not None else "no whole frame"
                    seconds = limits.first_frame_seconds if first else limits.frame_seconds
                    await reply(conn, Refused(error=f"{what} within {seconds:g} s"))
                    return
                if msg is None:
                    return
                first = None
                try:
                    answer = await self.dispatch(conn, msg, tickets)
                except Refusal as e:
                    answer = Refused(error=str(e))
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
                    await reply(conn, Refused(error=f"internal error: {type(e).__name__}"))
                    return
                if answer is not None:
                    await reply(conn, answer)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.runner.gone(conn, tickets)
            conn.close()
            self.admission.leave(conn.peer)

    async def dispatch(self, conn: Connection, msg: Message, tickets: list[int]) -> Message | None:
        peer = conn.peer
        match msg:
            case Register():
                itself = msg.pid == peer.pid
                self.site.check(
                    peer,
                    lambda: (
                        itself and (self.queue.runs_job_of(peer) or self.hosted_mosrun(peer.pid))
                    ),
                )
                return self.processes.register(peer, msg)
            case Enqueue():
                ticket = msg.ticket
                self.site.check(peer, lambda: self.queue.known_ticket(ticket))
                return self.queue.enqueue(conn, msg, tickets)
            case Release():
                self.runner.release(msg.ticket, tickets)
                return None
            case ListProcesses():
                await send_chunks(conn, self.status.list_processes(peer, msg))
                return None
            case ListQueue():
                frozen = self.frozen_jobs.entries(peer, msg.all_users)
                await send_chunks(conn, with_frozen(await self.queue.listing(peer, msg), frozen))
                return None
            case QueueAction():
                count = await self.frozen_jobs.action(peer, msg)
                if count and msg.by_job:  # the job's queued processes too, if it has any
                    with contextlib.suppress(Refusal):
                        count += await self.queue.action(peer, msg)
                return Done(count=count or await self.queue.action(peer, msg))
            case GetStatus():
                return Status(facts=self.status.facts())
            case Migrate():
                if self.batches is not None:
                    self.batches.refuse_moving(msg.pid)
                return await self.processes.migrate(peer, msg)
            case DeputyHello():
                if self.freezer.deputy_hello(conn, msg):
                    return None  # its order (the image) comes with continue
                if self.migrations is None:
                    raise Refusal("this node has no cluster")
                await self.migrations.deputy_hello(conn, msg)
                return None
            case DeputyLost():
                if self.migrations is not None:
                    await self.migrations.deputy_lost(conn, msg)
                return None
            case DeputyStop():
                if self.migrations is not None:
                    self.migrations.deputy_stop(conn)
                return None
            case ListNodes():
                return self.status.nodes()
            case Checkpoint():
                if self.batches is not None:
                    self.batches.refuse_moving(msg.pid)
                return await self.checkpoints.checkpoint(peer, msg)
            case CheckpointSettings():
                return self.checkpoints.checkpoint_settings(peer, msg)
            case StartNative():
                await start_native(conn, msg)
                return None
            case StartBatch():
                self.site.check(peer, lambda: self.queue.runs_job_of(peer))
                if self.batches is None:
                    return without_cluster(msg)
                await self.batches.submit(conn, msg)
                return None
            case GuardHello():
                return self.guards.hello(conn, msg)
            case NodeControl():
                return await self.node_control(peer, msg)
            case Shutdown():
                if not peer.is_root and peer.uid != self.owner:
                    raise Refusal("only root or the agent's owner may stop the agent")
                self.stopping.set()
                return Done()
        raise Refusal(f"'{msg.OP}' is not a request")
