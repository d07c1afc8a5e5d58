"""The Chooser: where mosrun's placement options start a program (no cluster needed)."""

from __future__ import annotations

import pytest

from mosix.cluster.nodemap import Node, NodeMap
from mosix.home_agent.placement import Chooser, NoPlace, Request, WaitForMemory, placement_of
from mosix.protocol import LoadVector

ME = 1
NODES = NodeMap(
    [
        Node(1, "10.0.0.1", "one"),
        Node(2, "10.0.0.2", "two"),
        Node(3, "10.0.0.3", "three"),
        Node(4, "10.0.0.4", "four", partition=2),
    ]
)


def vector(node: int, load: float = 0.0, free_mb: int = 1000, cpus: int = 2) -> LoadVector:
    return LoadVector(node=node, cpus=cpus, load=load, free_mb=free_mb, total_mb=2000)


def request(word: str, force: bool = False, mb: int = 0, grid: int = 0) -> Request:
    return Request(placement_of(word), force_elsewhere=force, required_mb=mb, grid_class=grid)


def choose(word: str, loads: dict[int, LoadVector], **options: object) -> int:
    return Chooser(NODES, ME).choose(loads, request(word, **options))  # type: ignore[arg-type]


IDLE = {n: vector(n) for n in (1, 2, 3, 4)}


def test_best_ties_go_home_then_to_the_lowest_number() -> None:
    assert choose("-b", IDLE) == ME
    loaded_home = {**IDLE, 1: vector(1, load=1)}
    assert choose("-b", loaded_home) == 2
    assert choose("-b", {**loaded_home, 2: vector(2, load=1)}) == 3


def test_best_weighs_load_by_computing_power() -> None:
    loads = {1: vector(1, load=3), 2: vector(2, load=2, cpus=1), 3: vector(3, load=2, cpus=4)}
    assert choose("-b", loads) == 3  # (2+1)/4 beats (3+1)/2 and (2+1)/1


def test_best_with_memory_only_where_it_fits_or_waits() -> None:
    loads = {**IDLE, 3: vector(3, load=5, free_mb=5000)}
    assert choose("-b", loads, mb=4000) == 3  # busier, but the only one with the memory
    with pytest.raises(WaitForMemory):
        choose("-b", loads, mb=6000)


def test_other_partitions_only_with_G() -> None:
    busy = {n: vector(n, load=4) for n in (1, 2, 3)} | {4: vector(4)}
    assert choose("-b", busy) == ME  # node 4 is in another partition
    assert choose("-b", busy, grid=1) == 4
    with pytest.raises(NoPlace, match="not available"):
        choose("-4", busy)
    assert choose("-4", busy, grid=1) == 4


def test_G_classes_are_compared_with_what_a_node_takes() -> None:
    nodes = NodeMap([*NODES, Node(5, "10.0.0.5", "five", partition=3, classes=frozenset({5}))])
    chooser = Chooser(nodes, ME)
    loads = {n: vector(n, load=4) for n in (1, 2, 3)} | {4: vector(4, load=1), 5: vector(5)}
    assert chooser.choose(loads, request("-b", grid=5)) == 5  # node 5 takes class 5
    assert chooser.choose(loads, request("-b", grid=1)) == 4  # node 4 takes any class
    with pytest.raises(NoPlace, match="not available"):
        chooser.choose(loads, request("-5", grid=2))
    assert chooser.allows(5, 5) and not chooser.allows(5, 1) and not chooser.allows(4, 0)
    assert chooser.allows(2, 0) and chooser.allows(ME, 0)  # its own partition: no -G needed
    assert "does not take class 2 (-G2)" in chooser.refusal(5, 2)
    assert "needs -G" in chooser.refusal(4, 0)


def test_named_nodes() -> None:
    assert choose("-2", IDLE) == 2
    assert choose("-rthree", IDLE) == 3
    assert choose("-10.0.0.2", IDLE) == 2
    assert choose("-h", IDLE) == ME
    assert choose("", IDLE) == ME  # where the parent runs: mosrun's parent is at home
    for _ in range(20):
        assert choose("-j2-3", IDLE) in (2, 3)
    assert choose("-jtwo", IDLE) == 2


def test_unknown_or_unavailable_nodes_refused_unless_F() -> None:
    without_3 = {n: v for n, v in IDLE.items() if n != 3}
    with pytest.raises(NoPlace, match=r"^-rthree: node 3 is not available \(-F"):
        choose("-rthree", without_3)
    with pytest.raises(NoPlace, match=r"^-rnine: no such node in this cluster$"):
        choose("-rnine", IDLE)
    with pytest.raises(NoPlace, match=r"^-9: no such node in this cluster$"):
        choose("-9", IDLE)
    assert choose("-rthree", without_3, force=True) == ME  # elsewhere: the best of the rest
    loaded_home = {**without_3, 1: vector(1, load=2)}
    assert choose("-rthree", loaded_home, force=True) == 2
    with pytest.raises(NoPlace, match="no such node"):
        choose("-rnine", IDLE, force=True)  # -F moves to another node, not from a bad name
    with pytest.raises(NoPlace, match=r"^-j8-9: no such node in this cluster$"):
        choose("-j8-9", IDLE, force=True)  # nor from a list naming no node of the cluster
