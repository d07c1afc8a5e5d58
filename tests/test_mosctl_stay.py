"""mosctl stay/nostay and lstay/nolstay against the real balancer of a 3-node test cluster.

Four CPU-bound jobs (tests/cprogs/burn.c) on one 2-processor node with two idle
nodes beside it move (tests/test_balancing.py); here they must not while the node
says stay, and must once it says nostay.  ``lstay`` keeps this home's own
processes at home, but not guests: four jobs of node 1 put on node 2 by hand leave
node 2 though node 2 says lstay, and stay there when it says stay.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clusters import node_programs
from support.waiting import wait_until

from mosix.agent_paths import RUN_DIR_ENV
from mosix.testcluster import LocalCluster

pytestmark = pytest.mark.slow  # several balancing rounds per verb: about a minute

JOBS = 4
ROUNDS = 6  # balancing rounds in which nothing may move
WAIT = 90.0


@pytest.fixture(scope="module")
def burn() -> Iterator[Path]:
    with node_programs("stay", {"burn": ["-O0", "burn.c"]}) as directory:
        yield directory / "burn"


def tool(cluster: LocalCluster, k: int, *argv: str) -> str:
    """A tool run on the host against node k's agent (inside the node it would add to
    the load the agent balances)."""
    env = {**os.environ, RUN_DIR_ENV: str(cluster.node_path(k, "/run/mosix"))}
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=env).stdout


def where_they_run(cluster: LocalCluster, pids: list[int]) -> Counter[str]:
    found = {p["pid"]: p["where"] for p in json.loads(tool(cluster, 1, "mosps", "--json"))}
    return Counter(found.get(pid, "gone") for pid in pids)


def balancing(cluster: LocalCluster) -> tuple[int, int]:
    """(rounds, moves) of node 1's balancer."""
    facts = json.loads(tool(cluster, 1, "mosctl", "status", "--json"))
    return facts["balance_rounds"], facts["balance_moves"]


def still_for_rounds(cluster: LocalCluster, pids: list[int], expected: Counter[str]) -> None:
    rounds, moves = balancing(cluster)
    wait_until(
        lambda: balancing(cluster)[0] >= rounds + ROUNDS,
        WAIT,
        what=f"{ROUNDS} balancing rounds",
        period=0.5,
    )
    assert balancing(cluster)[1] == moves
    assert where_they_run(cluster, pids) == expected


def some_leave(cluster: LocalCluster, pids: list[int], node: str) -> None:
    wait_until(
        lambda: where_they_run(cluster, pids)[node] < JOBS,
        WAIT,
        what=f"some jobs to leave {node}",
        period=0.5,
    )


@pytest.fixture
def cluster(make_cluster: Any) -> LocalCluster:
    made: LocalCluster = make_cluster(3)
    return made


@contextlib.contextmanager
def burning(cluster: LocalCluster, burn: Path) -> Iterator[list[int]]:
    """JOBS jobs started at node 1; they end with the block, their output whole."""
    procs = [
        cluster.popen(
            1,
            ["mosrun", str(burn)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(JOBS)
    ]
    pids = [p.pid for p in procs]
    try:
        wait_until(lambda: where_they_run(cluster, pids)["gone"] == 0, what="the jobs to start")
        yield pids
    finally:
        for p in procs:
            stdout, stderr = p.communicate("", timeout=120)
            assert p.returncode == 0, stderr
            assert re.fullmatch(r"burnt \d+ rounds\n", stdout), stdout


@pytest.mark.parametrize("verb", ["stay", "lstay"])
def test_local_processes_stay_until_told_otherwise(
    verb: str, cluster: LocalCluster, burn: Path
) -> None:
    tool(cluster, 1, "mosctl", verb)
    with burning(cluster, burn) as pids:
        still_for_rounds(cluster, pids, Counter({"home": JOBS}))
        tool(cluster, 1, "mosctl", f"no{verb}")
        some_leave(cluster, pids, "home")


def test_guests_stay_under_stay_but_not_under_lstay(cluster: LocalCluster, burn: Path) -> None:
    tool(cluster, 1, "mosctl", "lstay")  # the jobs are held where they are put
    tool(cluster, 2, "mosctl", "stay")

    def node2_says_stay() -> bool:
        nodes = json.loads(tool(cluster, 1, "mosctl", "rstatus", "--json"))
        return "stay" in nodes[1]["settings"]

    wait_until(node2_says_stay, what="node 1 to see node 2's stay")
    with burning(cluster, burn) as pids:
        for pid in pids:
            tool(cluster, 1, "migrate", str(pid), "2")
        tool(cluster, 1, "mosctl", "nolstay")  # now only node 2's word keeps them there
        still_for_rounds(cluster, pids, Counter({"node2": JOBS}))
        tool(cluster, 2, "mosctl", "nostay")
        tool(cluster, 2, "mosctl", "lstay")  # its own processes: these are guests
        some_leave(cluster, pids, "node2")
