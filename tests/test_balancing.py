"""Automatic load balancing in a real test cluster whose nodes each get 0.6 of a
processor (a cgroup per node), so three nodes behave like three small machines.

Six CPU-bound jobs started on node 1 spread two per node; then the cluster,
balanced, stays still: no process moves again over many balancing rounds.
The jobs' output and exit status come through as if they had never moved.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import node_programs
from support.waiting import wait_until

from mosix.agent_paths import RUN_DIR_ENV
from mosix.testcluster import LocalCluster

pytestmark = pytest.mark.slow  # each test waits for several balancing rounds: 14-20 s

JOBS = 6
WAIT = 90.0  # seconds, for the cluster to do what it should (it takes a few rounds)


@pytest.fixture(scope="module")
def programs() -> Iterator[Path]:
    builds = {name: ["-O0", f"{name}.c"] for name in ("burn", "ioheavy")}
    with node_programs("balance", builds) as directory:
        (directory / "data").write_bytes(bytes(range(256)))  # what ioheavy reads
        yield directory


def start(cluster: LocalCluster, argv: list[str]) -> subprocess.Popen[str]:
    return cluster.popen(
        1, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(jobs: list[subprocess.Popen[str]], pattern: str) -> None:
    """Close each job's stdin: it ends; its output and status must be right."""
    results = [job.communicate("", timeout=120) for job in jobs]
    for job, (stdout, stderr) in zip(jobs, results, strict=True):
        assert job.returncode == 0, stderr
        assert re.fullmatch(pattern, stdout), stdout


def ask_node1(cluster: LocalCluster, argv: list[str]) -> str:
    """Run a tool on the host against node 1's agent (through its socket, seen from the
    host): inside the node it would add to the load the agent balances."""
    env = {**os.environ, RUN_DIR_ENV: str(cluster.node_path(1, "/run/mosix"))}
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout


def where_they_run(cluster: LocalCluster, pids: list[int]) -> Counter[str]:
    out = ask_node1(cluster, ["mosps"])
    where = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        where[int(words[0])] = words[3]
    return Counter(where.get(pid, "gone") for pid in pids)


def balancing_counters(cluster: LocalCluster) -> tuple[int, int]:
    """(rounds, moves) of node 1's balancer, from mosctl status."""
    out = ask_node1(cluster, ["mosctl", "status"])
    found = re.search(r"balancing:\s+(\d+) rounds, (\d+) moves", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def test_a_batch_spreads_and_then_stays_still(make_cluster, programs: Path) -> None:
    cluster = make_cluster(3, cpus=0.6)
    jobs = [start(cluster, ["mosrun", str(programs / "burn")]) for _ in range(JOBS)]
    pids = [job.pid for job in jobs]
    try:
        even = Counter({"home": 2, "node2": 2, "node3": 2})
        wait_until(
            lambda: where_they_run(cluster, pids) == even,
            WAIT,
            what="two jobs on each node",
            period=0.5,
        )
        rounds, moves = balancing_counters(cluster)
        wait_until(
            lambda: balancing_counters(cluster)[0] >= rounds + 5,
            WAIT,
            what="five more balancing rounds",
            period=0.5,
        )
        moved = re.findall(r"balancing: process \d+ from .*", cluster.agent_log(1).read_text())
        assert balancing_counters(cluster)[1] == moves, moved  # none since it was balanced
        assert where_they_run(cluster, pids) == even
        # four moves out, at most one correction on the way (a load vector measured while
        # the first moves were under way can show a node a process too light)
        assert JOBS - 2 <= len(moved) == moves <= JOBS, moved
    finally:
        finish(jobs, r"burnt \d+ rounds\n")


def test_minus_L_keeps_processes_where_they_are(make_cluster, programs: Path) -> None:
    """Four CPU-bound jobs on a 2-processor node with two idle nodes beside it would
    move (the first test shows it); under -L none does."""
    cluster = make_cluster(3)
    jobs = [start(cluster, ["mosrun", "-L", str(programs / "burn")]) for _ in range(4)]
    try:
        rounds, moves = balancing_counters(cluster)
        wait_until(
            lambda: balancing_counters(cluster)[0] >= rounds + 6,
            WAIT,
            what="six balancing rounds",
            period=0.5,
        )
        assert balancing_counters(cluster)[1] == moves == 0
        assert where_they_run(cluster, [job.pid for job in jobs]) == Counter({"home": 4})
    finally:
        finish(jobs, r"burnt \d+ rounds\n")


def test_an_io_heavy_process_is_pulled_home_unless_c(make_cluster, programs: Path) -> None:
    cluster = make_cluster(3)
    data = str(programs / "data")
    ignoring = start(cluster, ["mosrun", "-rnode2", "-c", str(programs / "ioheavy"), data])
    heavy = start(cluster, ["mosrun", "-rnode2", str(programs / "ioheavy"), data])
    try:
        wait_until(  # started on node 2 (they wait at home for the move first)
            lambda: (
                where_they_run(cluster, [ignoring.pid, heavy.pid]) == Counter({"node2": 2})
                or f"balancing: process {heavy.pid} from node 2" in cluster.agent_log(1).read_text()
            ),
            WAIT,
            what="both on node 2",
            period=0.5,
        )
        wait_until(
            lambda: where_they_run(cluster, [heavy.pid]) == Counter({"home": 1}),
            WAIT,
            what="the I/O-heavy process back home",
            period=0.5,
        )
        assert f"balancing: process {heavy.pid} from node 2 to node 1" in (
            cluster.agent_log(1).read_text()
        )
        rounds, _ = balancing_counters(cluster)
        wait_until(
            lambda: balancing_counters(cluster)[0] >= rounds + 4,
            WAIT,
            what="four balancing rounds",
            period=0.5,
        )
        assert where_they_run(cluster, [ignoring.pid]) == Counter({"node2": 1})  # -c
    finally:
        finish([ignoring, heavy], r"\d+ reads\n")
