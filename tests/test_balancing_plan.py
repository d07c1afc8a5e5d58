"""The automatic migration decisions (mosix.home_agent.balancing) and the decayed
process statistics they use (mosix.home_agent.process_stats)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from support.waiting import wait_until

from mosix.home_agent.balancing import Candidate, Move, NodeState, plan
from mosix.home_agent.process_stats import Sample, Stats, fold, sample

HOME = 1
COST = 60e-6


def cpu_bound(pid: int, where: int = HOME, **changes: object) -> Candidate:
    values: dict[str, object] = {
        "pid": pid,
        "where": where,
        "demand": 1.0,
        "io_rate": 0.0,
        "io_aware": True,
        "memory_mb": 10,
        "required_mb": 0,
        "allowed": frozenset({1, 2, 3}),
    }
    values.update(changes)
    return Candidate(**values)  # type: ignore[arg-type]


def nodes_with(loads: dict[int, float], capacity: float = 1.0, free_mb: int = 1000) -> dict:
    return {n: NodeState(n, capacity, load, free_mb, 2000) for n, load in loads.items()}


def placed(cands: list[Candidate], moves: list[Move]) -> Counter[int]:
    where = {c.pid: c.where for c in cands}
    for m in moves:
        where[m.pid] = m.target
    return Counter(where.values())


def test_a_batch_on_one_node_is_spread_evenly() -> None:
    cands = [cpu_bound(pid) for pid in range(100, 106)]
    moves = plan(cands, nodes_with({1: 6, 2: 0, 3: 0}), HOME, COST)
    assert placed(cands, moves) == {1: 2, 2: 2, 3: 2}
    assert all(m.source == HOME for m in moves)


def test_faster_nodes_get_more() -> None:
    cands = [cpu_bound(pid) for pid in range(100, 106)]
    nodes = {
        1: NodeState(1, 1.0, 6, 1000, 2000),
        2: NodeState(2, 4.0, 0, 1000, 2000),  # four processors
        3: NodeState(3, 1.0, 0, 1000, 2000),
    }
    moves = plan(cands, nodes, HOME, COST)
    assert placed(cands, moves) == {1: 1, 2: 4, 3: 1}


@given(st.lists(st.integers(min_value=0, max_value=6), min_size=2, max_size=6))
def test_a_balanced_cluster_stays_still(extra: list[int]) -> None:
    """Equal nodes whose loads differ by at most one: nothing moves (no ping-pong)."""
    base = max(extra)
    loads = {n: base - (1 if e % 2 else 0) for n, e in enumerate(extra, 1)}
    cands = []
    pid = 100
    for n, load in loads.items():
        for _ in range(load):
            cands.append(cpu_bound(pid, n, allowed=frozenset(loads)))
            pid += 1
    assert plan(cands, nodes_with(loads), HOME, COST) == []


@given(
    st.integers(min_value=0, max_value=12),
    st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=4),
    st.sampled_from([1.0, 2.0]),
)
def test_after_one_plan_nothing_is_left_to_move(
    at_home: int, others: list[int], cap: float
) -> None:
    """Applying a plan leaves a state whose plan is empty: the moves do not oscillate."""
    loads = {HOME: float(at_home), **{n: float(load) for n, load in enumerate(others, 2)}}
    allowed = frozenset(loads)
    cands = [cpu_bound(100 + i, HOME, allowed=allowed) for i in range(at_home)]
    moves = plan(cands, nodes_with(loads, cap), HOME, COST)
    after = dict(loads)
    where = {c.pid: c.where for c in cands}
    for m in moves:
        after[m.source] -= 1
        after[m.target] += 1
        where[m.pid] = m.target
    again = [cpu_bound(pid, n, allowed=allowed) for pid, n in where.items()]
    assert plan(again, nodes_with(after, cap), HOME, COST) == []


def test_an_io_heavy_process_away_comes_home_unless_c() -> None:
    loads = {1: 0, 2: 1, 3: 0}
    heavy = cpu_bound(100, where=2, io_rate=20000.0)  # 20,000 forwarded calls/s: 1.2 s/s
    assert [m.target for m in plan([heavy], nodes_with(loads), HOME, COST)] == [HOME]
    ignored = cpu_bound(100, where=2, io_rate=20000.0, io_aware=False)
    assert plan([ignored], nodes_with(loads), HOME, COST) == []


def test_an_io_heavy_process_stays_home() -> None:
    heavy = cpu_bound(100, io_rate=20000.0)
    assert plan([heavy], nodes_with({1: 2, 2: 0, 3: 0}), HOME, COST) == []
    light = cpu_bound(100, io_rate=10.0)
    assert [m.target for m in plan([light], nodes_with({1: 2, 2: 0, 3: 0}), HOME, COST)] in (
        [2],
        [3],
    )


def test_a_sleeping_process_is_not_moved() -> None:
    idle = cpu_bound(100, demand=0.05)
    assert plan([idle], nodes_with({1: 5, 2: 0, 3: 0}), HOME, COST) == []


def test_memory_rules() -> None:
    # a target without the process's memory (or -m) free does not qualify
    big = cpu_bound(100, memory_mb=1500)
    assert plan([big], nodes_with({1: 3, 2: 0, 3: 0}), HOME, COST) == []
    wants = cpu_bound(100, required_mb=1500)
    assert plan([wants], nodes_with({1: 3, 2: 0, 3: 0}), HOME, COST) == []
    # a node short of memory ushers its processes off, even idle ones
    nodes = nodes_with({1: 1, 2: 0, 3: 0})
    nodes[HOME] = NodeState(HOME, 1.0, 1, 50, 2000)
    idle = cpu_bound(100, demand=0.0)
    assert len(plan([idle], nodes, HOME, COST)) == 1


def test_partition_rule() -> None:
    only_home_partition = cpu_bound(100, allowed=frozenset({1, 3}))
    moves = plan([only_home_partition], nodes_with({1: 3, 2: 0, 3: 1}), HOME, COST)
    assert [m.target for m in moves] == [3]


def test_away_processes_only_come_home() -> None:
    away = cpu_bound(100, where=2)
    # node 2 crowded, node 3 idle, home busy: it does not hop 2 -> 3
    assert plan([away], nodes_with({1: 4, 2: 4, 3: 0}), HOME, COST) == []
    # home idle: it comes back
    assert [m.target for m in plan([away], nodes_with({1: 0, 2: 4, 3: 0}), HOME, COST)] == [HOME]


# ------------------------------------------------------------ decayed statistics


def run(samples: list[tuple[float, float, int]], decay: int) -> Stats:
    stats = Stats()
    for when, busy_s, calls in samples:
        stats = fold(stats, Sample(when, int(busy_s * 1e9), calls), decay)
    return stats


def test_demand_and_rate_from_counters() -> None:
    stats = run([(0.0, 0.0, 0), (2.0, 1.0, 400)], decay=5000)
    assert abs(stats.demand - 0.5) < 1e-9
    assert abs(stats.io_rate - 200.0) < 1e-9


def test_decay_10000_keeps_only_the_last_interval() -> None:
    stats = run([(0.0, 0.0, 0), (1.0, 1.0, 1000), (2.0, 1.0, 1000)], decay=10000)
    assert stats.demand == 0.0 and stats.io_rate == 0.0


def test_decay_0_is_the_lifetime_mean() -> None:
    stats = run([(0.0, 0.0, 0), (1.0, 1.0, 1000), (4.0, 1.0, 1000)], decay=0)
    assert abs(stats.demand - 0.25) < 1e-9
    assert abs(stats.io_rate - 250.0) < 1e-9


def test_decay_halves_the_old_weight_per_second() -> None:
    stats = run([(0.0, 0.0, 0), (1.0, 1.0, 0), (2.0, 1.0, 0)], decay=5000)
    assert abs(stats.demand - 0.5) < 1e-9  # 1.0 then 0.0, the old weighing half


def test_a_first_sample_covers_the_life_so_far_unless_it_moved() -> None:
    first = Sample(when=10.0, busy_ns=int(3e9), calls=600, started=4.0)
    stats = fold(Stats(), first, 5000, lifetime=True)
    assert abs(stats.demand - 0.5) < 1e-9 and abs(stats.io_rate - 100.0) < 1e-9
    assert stats.seconds == 6.0
    moved = fold(Stats(), first, 5000, lifetime=False)  # counters from before its move
    assert moved.seconds == 0.0 and moved.demand == 0.0


SPINNING_THREAD = """
import threading
stop = threading.Event()
def spin():
    while not stop.is_set():
        pass
t = threading.Thread(target=spin)
t.start()
input()  # the main thread sleeps reading stdin while the other computes
stop.set()
t.join()
"""


def test_a_sample_counts_every_thread_of_a_real_process() -> None:
    """A process whose main thread sleeps while another computes is busy (issue 16:
    without this the balancer never moved a threaded program)."""
    proc = subprocess.Popen([sys.executable, "-c", SPINNING_THREAD], stdin=subprocess.PIPE)
    try:
        wait_until(lambda: len(os.listdir(f"/proc/{proc.pid}/task")) == 2, 30, what="its thread")
        first = sample(proc.pid)
        assert first is not None

        def busy_since_first() -> bool:
            now = sample(proc.pid)
            assert now is not None and first is not None
            return now.busy_ns - first.busy_ns > 200_000_000

        wait_until(busy_since_first, 30, what="0.2 s of the spinning thread's time counted")
        proc.communicate(b"\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
