"""Automatic migration decisions: where each of this node's processes runs best.

A pure function of the load vectors and the processes' statistics, so that it
can be reasoned about (and property-tested) apart from the agent.

The measure is the *share* of a processor a process gets on a node:
min(1, capacity / load), where capacity is cpus * speed and load counts the
process itself.  A process away from home is slowed by its forwarded calls:
its share there is divided by (1 + io_rate * forward cost), so I/O-heavy
processes are pulled home (unless -c).  A node short of memory gives no share
to the processes on it (they are ushered off), and a node qualifies as a
destination only with the process's memory free (its resident size, and -m).

A process moves when another node would give it a share at least MARGIN
better (relative) and MIN_GAIN better (absolute) than where it is.  Moves are
planned one at a time, each updating the loads the next one sees, best gain
first.  Processes at home may go to any node; processes away may only come
home (a further move goes through home anyway: two hops).  With equal nodes a
cluster whose loads differ by at most one is left alone: a process on a node
with load L would get capacity/L on a node with load L - 1 too: no gain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MARGIN = 0.2  # relative gain a move must bring
MIN_GAIN = 0.05  # absolute gain (in processors) a move must bring
SHORT_OF_MEMORY = 0.05  # a node with less than this fraction of its memory free
MIN_DEMAND = 0.5  # a home process that wants a processor less than this stays


@dataclass(frozen=True)
class NodeState:
    number: int
    capacity: float  # cpus * speed
    load: float  # runnable processes
    free_mb: int
    total_mb: int

    @property
    def short_of_memory(self) -> bool:
        return self.total_mb > 0 and self.free_mb < SHORT_OF_MEMORY * self.total_mb


@dataclass(frozen=True)
class Candidate:
    pid: int
    where: int  # node it runs on
    demand: float  # share of time it wants a processor (0..1)
    io_rate: float  # forwarded (or forwardable) calls per second
    io_aware: bool  # False under -c: I/O does not count
    memory_mb: int  # resident size
    required_mb: int  # -m
    allowed: frozenset[int]  # nodes it may go to (partition rule), home included


@dataclass(frozen=True)
class Move:
    pid: int
    source: int
    target: int
    before: float  # its share where it is
    after: float  # its share at the target


def share(node: NodeState, load_with_it: float, slowdown: float) -> float:
    if node.short_of_memory:
        return 0.0
    return min(1.0, node.capacity / max(load_with_it, 1.0)) / slowdown


def plan(
    candidates: Iterable[Candidate],
    nodes: Mapping[int, NodeState],
    home: int,
    forward_cost: float,
) -> list[Move]:
    """The moves worth making now, best first (``forward_cost``: seconds per forwarded call)."""
    loads = {n: s.load for n, s in nodes.items()}
    free = {n: s.free_mb for n, s in nodes.items()}
    waiting = [c for c in candidates if c.where in nodes]
    moves: list[Move] = []
    while waiting:
        best: tuple[float, Move, Candidate] | None = None
        for c in waiting:
            move = best_move(c, nodes, loads, free, home, forward_cost)
            if move is not None:
                gain = move.after - move.before
                if best is None or gain > best[0]:
                    best = (gain, move, c)
        if best is None:
            break
        _, move, chosen = best
        moves.append(move)
        waiting.remove(chosen)
        counted = counts_in_load(chosen, home)
        loads[move.source] -= counted
        loads[move.target] += counted
        free[move.source] += chosen.memory_mb
        free[move.target] -= chosen.memory_mb
    return moves


def counts_in_load(c: Candidate, home: int) -> float:
    """How much the process adds to its node's load (away: assumed CPU-bound)."""
    return 1.0 if c.where != home or c.demand >= MIN_DEMAND else c.demand


def best_move(
    c: Candidate,
    nodes: Mapping[int, NodeState],
    loads: Mapping[int, float],
    free: Mapping[int, int],
    home: int,
    forward_cost: float,
) -> Move | None:
    here = nodes[c.where]
    if c.where == home and c.demand < MIN_DEMAND and not here.short_of_memory:
        return None  # it hardly computes: moving it gains nothing
    slowdown = 1.0 + (c.io_rate * forward_cost if c.io_aware else 0.0)
    before = share(here, loads[c.where], 1.0 if c.where == home else slowdown)
    targets = [home] if c.where != home else sorted(c.allowed - {home})
    best: Move | None = None
    for n in targets:
        node = nodes.get(n)
        if node is None or n == c.where:
            continue
        if n != home and free[n] < max(c.required_mb, c.memory_mb):
            continue
        after = share(node, loads[n] + 1.0, 1.0 if n == home else slowdown)
        worth_it = after >= before * (1.0 + MARGIN) and after - before >= MIN_GAIN
        if worth_it and (best is None or after > best.after):
            best = Move(c.pid, c.where, n, before, after)
    return best
