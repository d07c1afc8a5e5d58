"""Where a program should run: mosrun's placement options against the cluster.

The manual: -r{host}, -{a.b.c.d}, -{n} name a node; -h is home; -b the best
node (with at least -m MB free: the program waits until one qualifies);
-j{list} one at random from the list; no option: where the parent runs
(mosrun's parent is at home: a process that forks or executes elsewhere is
brought home first).  -F: start elsewhere when the node named is not
available; so is a node that accepts no guests (mosctl block).  Without -G (or
with -G0), only nodes of the home node's partition qualify; -G{class} adds the
nodes of other partitions that take that class (a node's ``classes`` in the map;
by default every class).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from mosix.arguments import (
    Addresses,
    AmongCandidates,
    HostName,
    NodeNumbers,
    OnAddress,
    OnBest,
    OnHome,
    OnHost,
    OnNode,
    Placement,
    UsageError,
    WhereParent,
    parse,
)
from mosix.cluster.admin import says
from mosix.cluster.nodemap import NodeMap
from mosix.protocol import LoadVector


class NoPlace(Exception):
    """The placement cannot be honoured (one line); with -F the caller retries elsewhere."""


class WaitForMemory(Exception):
    """-b -m: no node has the memory now; try again when the loads change."""


@dataclass(frozen=True)
class Request:
    placement: Placement
    force_elsewhere: bool
    required_mb: int
    grid_class: int  # -G{class}: other partitions that take it too (0: none)


def placement_of(word: str) -> Placement:
    """The placement an option word gives ("" : none)."""
    if not word:
        return WhereParent()
    try:
        return parse([word, "true"]).placement
    except UsageError as e:
        raise NoPlace(str(e)) from None


def score(v: LoadVector) -> float:
    """Lower is better: runnable processes per unit of computing power."""
    return (v.load + 1.0) / (max(v.cpus, 1) * max(v.speed, 0.01))


class Chooser:
    def __init__(self, nodes: NodeMap, me: int) -> None:
        self.nodes = nodes
        self.me = me

    def allows(self, node: int, grid_class: int) -> bool:
        """Whether a process of this home with ``-G{grid_class}`` may run on ``node``."""
        if node == self.me:
            return True
        found = self.nodes.by_number(node)
        if found is None:
            return False
        return found.partition == self.nodes.partition_of(self.me) or found.admits(grid_class)

    def refusal(self, node: int, grid_class: int) -> str:
        """Why ``node`` is not for this process (for one line to the user)."""
        found = self.nodes.by_number(node)
        label = found.label() if found else f"node {node}"
        partition = found.partition if found else "?"
        if grid_class <= 0:
            return f"{label} is in another partition ({partition}): that needs -G"
        return f"{label} (partition {partition}) does not take class {grid_class} (-G{grid_class})"

    def eligible(self, loads: Mapping[int, LoadVector], req: Request) -> dict[int, LoadVector]:
        """The nodes a process may go to: this one, and the others its -G class allows
        (:meth:`allows`) that accept guests (not blocked: mosctl block)."""
        return {
            n: v
            for n, v in loads.items()
            if n == self.me or (self.allows(n, req.grid_class) and not says(v, "block"))
        }

    def best(self, loads: Mapping[int, LoadVector], req: Request, exclude: set[int]) -> int:
        fits = [
            (score(v), n != self.me, n)
            for n, v in self.eligible(loads, req).items()
            if n not in exclude and v.free_mb >= req.required_mb
        ]
        if not fits:
            raise WaitForMemory()
        return min(fits)[2]

    def named(self, placement: Placement) -> list[int]:
        """The node numbers a placement names (empty: none named)."""
        match placement:
            case OnNode(node=n):
                if n not in self.nodes:
                    raise NoPlace(f"-{n}: no such node in this cluster")
                return [n]
            case OnHost(host=host):
                node = self.nodes.resolve(host)
                if node is None:
                    raise NoPlace(f"-r{host}: no such node in this cluster")
                return [node.number]
            case OnAddress(address=address):
                node = self.nodes.by_address(str(address))
                if node is None:
                    raise NoPlace(f"-{address}: no such node in this cluster")
                return [node.number]
            case AmongCandidates(candidates=candidates):
                return sorted({n for c in candidates for n in self._expand(c)})
        return []

    def _expand(self, c: NodeNumbers | Addresses | HostName) -> list[int]:
        match c:
            case NodeNumbers(first=first, last=last):
                return [n for n in range(first, last + 1) if n in self.nodes]
            case HostName(name=name):
                node = self.nodes.resolve(name)
                return [node.number] if node else []
            case Addresses(first=first, last=last):
                out = []
                for value in range(int(first), int(last) + 1):
                    node = self.nodes.by_address(str(IPv4Address(value)))
                    if node is not None:
                        out.append(node.number)
                return out
        return []

    def choose(self, loads: Mapping[int, LoadVector], req: Request) -> int:
        """The node to start on (this node's number: here)."""
        p = req.placement
        if isinstance(p, WhereParent | OnHome):
            return self.me
        if isinstance(p, OnBest):
            return self.best(loads, req, set())
        named = self.named(p)
        what = p.option()
        if not named:  # as a bad -r name: -F moves from a node that is down, not from a typo
            raise NoPlace(f"{what}: no such node in this cluster")
        usable = [n for n in named if n in self.eligible(loads, req)]
        if usable:
            return random.choice(usable)
        if req.force_elsewhere:
            return self.best(loads, req, set(named) - {self.me})
        return_text = ", ".join(str(n) for n in named)
        raise NoPlace(f"{what}: node {return_text} is not available (-F starts it elsewhere)")
