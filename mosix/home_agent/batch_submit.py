"""Batch jobs, the submitting node's side: ``mosrun -E``/``-M`` through this agent.

mosrun sends StartBatch on its control connection.  The agent chooses the node
as for ``-r``/``-{n}``/``-b`` (mosix.home_agent.placement), reads the caller's
ids, groups and umask from the kernel (never from the message), and offers the
job to that node's agent on an authenticated cluster connection
(mosix.remote_agent.batch_host).  Then it relays: the caller's BatchData (its
standard input) and BatchSignal go to the node, the job's BatchData (its
output and error) and its Exited come back to the caller, who writes them.
"""

from __future__ import annotations

import logging
import os
import time

import trio

from mosix.cluster.peers import Cluster
from mosix.cluster.stream import PeerStream, PeerUnavailable
from mosix.home_agent.connection import Connection
from mosix.home_agent.native_start import groups_of
from mosix.home_agent.placement import Chooser, NoPlace, Request, WaitForMemory, placement_of
from mosix.home_agent.refusal import Refusal
from mosix.protocol import (
    BatchData,
    BatchHere,
    BatchOffer,
    BatchSignal,
    Exited,
    ProcessInfo,
    ProtocolError,
    Refused,
    StartBatch,
    Started,
)
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")
KINDS = ("E", "M")
HERE = ("", "-h", "-b")  # placements that name the only node of a node without a cluster


def without_cluster(msg: StartBatch) -> BatchHere:
    """StartBatch on a node without a cluster: the only node is this one (Refusal for
    a placement that names another)."""
    if msg.kind not in KINDS:
        raise Refusal("batch job: a bad request")
    if msg.placement not in HERE:
        raise Refusal(
            f"batch job: {msg.placement}: this node has no cluster, "
            "so the job can only run here (-h, -b or no placement)"
        )
    return BatchHere()


class BatchSubmitter:
    def __init__(self, cluster: Cluster, chooser: Chooser, home: str) -> None:
        self.cluster = cluster
        self.chooser = chooser
        self.home = home  # this node's name, for mosps
        self.jobs: dict[int, ProcessInfo] = {}  # by the submitting mosrun's pid

    def listing(self) -> list[ProcessInfo]:
        """The batch jobs running elsewhere for mosrun processes of this node (mosps:
        the mosrun's pid, state "batch" for -E and "batch-M" for -M, WHERE the node)."""
        return list(self.jobs.values())

    def refuse_moving(self, pid: int) -> None:
        """migrate on a batch job's mosrun: one line saying why not (it runs wholly
        on its node, outside this home's reach: no migration, no checkpoint)."""
        job = self.jobs.get(pid)
        if job is not None:
            raise Refusal(
                f"process {pid} is a batch job running on {job.where}: "
                "it cannot be migrated or checkpointed"
            )

    def where(self, node: int) -> str:
        found = self.cluster.nodes.by_number(node)
        return (found.name or found.address) if found else str(node)

    def target(self, msg: StartBatch) -> int:
        request = Request(placement_of(msg.placement), msg.force_elsewhere, 0, 0)
        try:
            return self.chooser.choose(self.cluster.loads(), request)
        except WaitForMemory:
            raise Refusal("-b: no node can take the batch job now") from None
        except NoPlace as e:
            raise Refusal(str(e)) from None

    async def submit(self, conn: Connection, msg: StartBatch) -> None:
        """Start ``msg`` on its node and relay its streams until it ends."""
        for fd in conn.take_fds():  # none are expected: the streams travel as frames
            os.close(fd)
        if msg.kind not in KINDS or not msg.argv or not msg.cwd.startswith(b"/"):
            raise Refusal("batch job: a bad request")
        node = self.target(msg)
        peer = conn.peer
        try:
            umask = int(proc_info.status_value(peer.pid, "Umask") or "", 8)
        except (OSError, ValueError):
            raise Refusal("batch job: cannot read the caller's umask") from None
        offer = BatchOffer(
            home=self.cluster.me.number,
            kind=msg.kind,
            uid=peer.uid,
            gid=peer.gid,
            groups=groups_of(peer.pid),
            umask=umask,
            argv=msg.argv,
            env=msg.env,
            cwd=msg.cwd,
        )
        try:
            stream = await self.cluster.open(node)
        except PeerUnavailable as e:
            raise Refusal(f"batch job: {e}") from None
        async with stream:
            try:
                await stream.send(offer)
                answer = await stream.receive()
            except (PeerUnavailable, ProtocolError) as e:
                raise Refusal(f"batch job: {e}") from None
            if isinstance(answer, Refused):
                raise Refusal(f"batch job on node {node}: {answer.error}")
            if not isinstance(answer, Started):
                raise Refusal(f"batch job on node {node}: a bad answer")
            log.info("batch job of pid %d: pid %d on node %d", peer.pid, answer.pid, node)
            await conn.send(Started(pid=node))
            self.jobs[peer.pid] = ProcessInfo(
                pid=peer.pid,
                uid=peer.uid,
                job=msg.job,
                state="batch" if msg.kind == "E" else "batch-M",
                where=self.where(node),
                home=self.home,
                started=time.time(),
                estimate_minutes=None,
                memory_mb=None,
                flags=[],
                command=msg.argv[1:] if msg.kind == "E" else msg.argv,
            )
            try:
                await relay(conn, stream, node)
            finally:
                del self.jobs[peer.pid]


async def relay(conn: Connection, stream: PeerStream, node: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_from_caller, conn, stream, nursery.cancel_scope)
        try:
            while True:
                msg = await stream.receive()
                if isinstance(msg, BatchData) and msg.fd in (1, 2):
                    await conn.send(msg)
                elif isinstance(msg, Exited):
                    await conn.send(msg)
                    break
        except (PeerUnavailable, ProtocolError) as e:
            await conn.send(Refused(error=f"batch job on node {node}: {e}"))
        nursery.cancel_scope.cancel()


async def _from_caller(conn: Connection, stream: PeerStream, scope: trio.CancelScope) -> None:
    """The caller's input and signals to the job; the caller gone ends the relay
    (closing the connection makes the node kill the job)."""
    while True:
        try:
            msg = await conn.receive()
        except ProtocolError:
            msg = None
        if msg is None:
            scope.cancel()
            return
        if isinstance(msg, BatchData | BatchSignal):
            try:
                await stream.send(msg)
            except PeerUnavailable:
                return  # the relay reports it
