"""What the node tells: its processes (mosps), its queue's frames (mosq), its facts
(mosctl status), the cluster's nodes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from mosix.cluster.peers import Cluster
from mosix.home_agent.agent_config import AgentConfig
from mosix.home_agent.balancer import Balancer
from mosix.home_agent.connection import Connection, Peer
from mosix.home_agent.listing import Chunks, parts
from mosix.home_agent.refusal import Refusal, visible
from mosix.home_agent.registry import Registry
from mosix.protocol import (
    ListProcesses,
    Message,
    NodeFacts,
    Nodes,
    Processes,
    ProcessInfo,
    QueueListing,
)
from mosix.sysinfo import node_facts

if TYPE_CHECKING:
    from mosix.queue.queue import Capacity, Queue

R = TypeVar("R")


class StatusRequests:
    def __init__(
        self,
        config: AgentConfig,
        registry: Registry,
        queue: Queue,
        capacity: Capacity,
        cluster: Cluster | None,
        where_of: Callable[[int], str],
        balancer: Balancer | None,
        guests_and_away: Callable[[], tuple[int, int]] = lambda: (0, 0),
        batch_jobs: Callable[[], list[ProcessInfo]] = list,
    ) -> None:
        self.config = config
        self.registry = registry
        self.queue = queue
        self.capacity = capacity
        self.cluster = cluster  # None: a one-node cluster
        self.where_of = where_of  # where a process of this home runs
        self.balancer = balancer  # None: no automatic balancing
        self.guests_and_away = guests_and_away
        self.batch_jobs = batch_jobs  # mosrun -E/-M jobs submitted here, running elsewhere

    def list_processes(self, peer: Peer, msg: ListProcesses) -> Processes:
        if msg.all_users and not peer.is_root:
            raise Refusal("only root may list other users' processes")
        if msg.uid is not None and msg.uid != peer.uid and not peer.is_root:
            raise Refusal("only root may list other users' processes")
        found = list(self.registry.discover(self.where_of).values())
        found += self.batch_jobs()
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
            and visible(peer, p.uid)
        ]
        out.sort(key=lambda p: p.pid)
        return Processes(processes=out)

    def nodes(self) -> Nodes:
        return Nodes(nodes=self.cluster.listing() if self.cluster else [])

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
            processes=len(self.registry.discover(self.where_of)),
            **self.balancing_facts(),
            **self.cluster_facts(),
        )

    def cluster_facts(self) -> dict[str, Any]:
        cluster = self.cluster
        if cluster is None:
            return {"speed": self.config.speed}
        guests, away = self.guests_and_away()
        return {
            "speed": cluster.speed,
            "settings": cluster.admin.in_force(),
            "guests": guests,
            "away": away,
        }

    def balancing_facts(self) -> dict[str, int]:
        balancer = self.balancer
        if balancer is None:
            return {}
        return {"balance_rounds": balancer.rounds, "balance_moves": balancer.moves}


async def send_chunks(conn: Connection, listing: Processes | QueueListing | Chunks) -> None:
    """A listing in frames that fit MAX_FRAME (``more`` on all but the last)."""
    if isinstance(listing, Chunks):
        await send_parts(conn, listing.records, listing.frame)
    elif isinstance(listing, QueueListing):
        await conn.send(listing)
    else:
        await send_parts(conn, listing.processes, Processes)


async def send_parts(
    conn: Connection, records: Iterable[R], build: Callable[[list[R], bool], Message]
) -> None:
    before: list[R] | None = None
    for part in parts(records):
        if before is not None:
            await conn.send(build(before, True))
        before = part
    assert before is not None
    await conn.send(build(before, False))
