"""The partition's queue: which node keeps it, and where a job fits.

The keeper is the lowest-numbered live node of this node's partition: every
node finds the same one from the load vectors it already has, with no election
and no setting to keep consistent across the nodes; when it dies, the next one
takes over as soon as the others see it dead (``[cluster] dead_after``), and it
takes the queue back when it returns.

Each node's load vector also says which node it takes as the keeper and which of
its jobs the queue started, where, with how many slots (its relay's record): a
keeper counts those slots before it has heard the jobs' own announcements, which
come on a connection per job, in no particular order (mosix.queue.keeper).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mosix.cluster.peers import Cluster
from mosix.protocol import LoadVector
from mosix.queue.queue import QueuedJob

QUEUE_SLOTS = "queue_slots"  # in a node's load vector's extra: its [queue] slots
QUEUE_KEEPER = "queue_keeper"  # ... the node it takes as the keeper (keeper_of, as it sees it)
QUEUE_STARTED = "queue_started"  # ... its started jobs, "TICKET:NODE:PARALLEL" by spaces
PROMISE_SECONDS = 10.0  # a started job's -m counts against its node until then


def keeper_of(cluster: Cluster) -> int:
    """The node that keeps this partition's queue (this one when isolated)."""
    partition = cluster.me.partition
    live = [
        node.number
        for node in cluster.nodes
        if node.partition == partition and cluster.alive(node.number)
    ]
    return min(live, default=cluster.me.number)


@dataclass
class NodeRoom:
    """What a node of the partition has for queued jobs."""

    number: int
    slots: int
    free_mb: int
    used: int = 0  # slots held by jobs the queue started there
    promised_mb: int = 0  # -m of jobs started there too recently to show in free_mb

    def hold(self, parallel: int, memory_mb: int, age: float) -> None:
        self.used += min(parallel, self.slots)
        if age < PROMISE_SECONDS:
            self.promised_mb += memory_mb

    def fits(self, job: QueuedJob) -> bool:
        need = min(job.parallel, self.slots)  # a job wider than the node runs alone
        if need > self.slots - self.used:
            return False
        return job.memory_mb <= self.free_mb - self.promised_mb


@dataclass(frozen=True)
class StartedJob:
    """A job of node ``home`` that the partition's queue started on ``node``."""

    home: int
    ticket: int  # the keeper's ticket
    node: int
    parallel: int


def started_text(jobs: Iterable[StartedJob]) -> str:
    """The value of QUEUE_STARTED for ``jobs`` (all of one home: the vector's node)."""
    return " ".join(f"{j.ticket}:{j.node}:{j.parallel}" for j in jobs)


def started_in(vector: LoadVector) -> list[StartedJob]:
    """The started jobs ``vector``'s node reports (a malformed item is left out)."""
    text = vector.extra.get(QUEUE_STARTED)
    if not isinstance(text, str):
        return []
    found = []
    for item in text.split():
        fields = item.split(":")
        if len(fields) != 3 or not all(f.isascii() and f.isdigit() for f in fields):
            continue
        ticket, node, parallel = (int(f) for f in fields)
        found.append(StartedJob(vector.node, ticket, node, parallel))
    return found


def keeper_named(vector: LoadVector) -> int | None:
    """The node ``vector``'s node takes as the keeper (None: it does not say)."""
    value = vector.extra.get(QUEUE_KEEPER)
    return value if isinstance(value, int) else None


def slots_of(vector: LoadVector) -> int:
    value = vector.extra.get(QUEUE_SLOTS)
    return value if isinstance(value, int) and value >= 0 else max(vector.cpus, 1)


def rooms_of(cluster: Cluster, own_slots: int) -> dict[int, NodeRoom]:
    """The live nodes of this partition, from their load vectors."""
    partition = cluster.me.partition
    rooms = {}
    for number, vector in cluster.loads().items():
        node = cluster.nodes.by_number(number)
        if node is None or node.partition != partition or not cluster.alive(number):
            continue
        slots = own_slots if number == cluster.me.number else slots_of(vector)
        rooms[number] = NodeRoom(number, slots, vector.free_mb)
    return rooms


def choose_node(job: QueuedJob, movable: bool, rooms: dict[int, NodeRoom]) -> int | None:
    """The node ``job`` starts on: its own if it fits there, else (if it may move) the
    one with the most free slots (the lowest number among equals); None: none yet."""
    own = rooms.get(job.node)
    if own is not None and own.fits(job):
        return job.node
    if not movable:
        return None
    others = sorted(rooms.values(), key=lambda r: (r.used - r.slots, r.number))
    for room in others:
        if room.fits(job):
            return room.number
    return None
