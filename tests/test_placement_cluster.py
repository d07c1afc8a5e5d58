"""Placement at start in a real 3-node test cluster: mosrun -{a.b.c.d}, -{n}, -j, -b, -b -m, -F.

Where a program ran is read from its home agent's log ("process P migrated to
node N"; no such line: it ran at home), and every run must also behave as the
program does anywhere: its output, its file at home, its exit status.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import node_programs
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

TIMEOUT = 120
EXPECTED_SUM = sum(range(200000000))


@pytest.fixture(scope="module")
def migrant() -> Iterator[str]:
    with node_programs("placement", {"migrant": ["-O0", "migrant.c"]}) as directory:
        yield str(directory / "migrant")


def home_log(cluster: LocalCluster) -> str:
    return cluster.agent_log(1).read_text()


def ran_on(cluster: LocalCluster, pid: int) -> int:
    """The node process ``pid`` of node 1 was placed on (1: it stayed home)."""
    found = re.findall(rf"process {pid} migrated to node (\d+)", home_log(cluster))
    assert len(found) <= 1, found
    return int(found[0]) if found else 1


def run_placed(cluster: LocalCluster, options: list[str], migrant: str, status: int = 5) -> int:
    """Run the program with placement ``options`` from node 1; the node it ran on."""
    proc = cluster.popen(
        1,
        ["mosrun", *options, migrant, "placed.out", str(status)],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate("hello\n", timeout=TIMEOUT)
    assert proc.returncode == status, stderr
    assert stdout == f"got hello pid {proc.pid} sum {EXPECTED_SUM}\n"
    assert cluster.node_path(1, "/tmp/placed.out").read_text() == f"hello {EXPECTED_SUM}\n"
    return ran_on(cluster, proc.pid)


def node_loads(cluster: LocalCluster) -> dict[int, tuple[float, int]]:
    """(load, free MB) of every node as node 1's agent sees them (mosctl rstatus)."""
    listing = cluster.run(1, ["mosctl", "rstatus"], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0, listing.stderr
    out = {}
    for line in listing.stdout.splitlines()[1:]:
        f = line.split()
        out[int(f[0])] = (float(f[7]), int(f[8]))
    return out


def test_a_named_node_by_address_or_number(cluster3: LocalCluster, migrant: str) -> None:
    assert run_placed(cluster3, [f"-{cluster3.address(2)}"], migrant) == 2
    assert run_placed(cluster3, ["-3"], migrant) == 3
    assert run_placed(cluster3, ["-h"], migrant) == 1


def test_a_list_picks_only_among_its_nodes(cluster3: LocalCluster, migrant: str) -> None:
    nodes = {run_placed(cluster3, ["-j2-3"], migrant, status=k) for k in range(4)}
    assert nodes <= {2, 3}, nodes
    assert run_placed(cluster3, ["-j3"], migrant) == 3


def test_best_leaves_a_loaded_home(cluster3: LocalCluster, migrant: str) -> None:
    hogs = [cluster3.popen(1, ["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        wait_until(lambda: node_loads(cluster3)[1][0] >= 2, TIMEOUT, what="node 1's load report")
        assert run_placed(cluster3, ["-b"], migrant) in (2, 3)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def most_free(cluster: LocalCluster) -> int:
    return max(free for _, free in node_loads(cluster).values())


def test_best_with_memory_waits_until_a_node_has_it(cluster3: LocalCluster, migrant: str) -> None:
    # Every node of the test cluster shares one kernel, so one hog lowers all their free memory.
    hog_mb = 3000
    need = most_free(cluster3) - hog_mb // 2  # more than any node has with the hog, less than now
    hog = cluster3.popen(
        1,
        [
            "python3",
            "-c",
            f"import sys; b = b'x' * ({hog_mb} << 20); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert hog.stdin is not None and hog.stdout is not None
    proc = None
    try:
        assert hog.stdout.readline() == "held\n"
        wait_until(lambda: most_free(cluster3) < need, TIMEOUT, what="the hog in the load reports")
        proc = cluster3.popen(
            1,
            ["mosrun", "-b", f"-m{need}", migrant, "waited.out", "7"],
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = f"process {proc.pid} waits for a node with {need} MB free"
        wait_until(lambda: line in home_log(cluster3), TIMEOUT, what="the wait")
        assert proc.poll() is None
        assert not cluster3.node_path(1, "/tmp/waited.out").exists()  # it has not started
        hog.stdin.close()  # the memory comes back
        assert hog.wait(timeout=TIMEOUT) == 0
        stdout, stderr = proc.communicate("memory\n", timeout=TIMEOUT)
        assert proc.returncode == 7, stderr
        assert stdout == f"got memory pid {proc.pid} sum {EXPECTED_SUM}\n"
    finally:
        for p in (hog, proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_best_with_memory_waiting_can_be_killed(cluster3: LocalCluster, migrant: str) -> None:
    need = 100 * most_free(cluster3)  # no node will ever have it
    proc = cluster3.popen(
        1,
        ["mosrun", "-b", f"-m{need}", migrant, "never.out", "0"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: f"process {proc.pid} waits for a node" in home_log(cluster3),
            TIMEOUT,
            what="the wait",
        )
        assert proc.poll() is None
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -15, stderr  # the program's own death, passed through
    assert stdout == ""
    ended = f"process {proc.pid} ended while waiting for {need} MB"
    wait_until(lambda: ended in home_log(cluster3), TIMEOUT, what="the agent to let it go")
    assert not cluster3.node_path(1, "/tmp/never.out").exists()
    gates = list(cluster3.node_path(1, "/tmp").glob("mosix-gate-*"))
    assert gates == []


def test_an_unavailable_node_is_refused_unless_F(cluster3: LocalCluster, migrant: str) -> None:
    down = "cluster: node 3 (node3, 10.77.0.3) is down"
    up = "cluster: node 3 (node3, 10.77.0.3) is up"
    ups = home_log(cluster3).count(up)
    assert cluster3.stop_agent(3)
    try:
        wait_until(lambda: down in home_log(cluster3), TIMEOUT, what="node 1 to see node 3 down")
        refused = cluster3.run(
            1,
            ["mosrun", "-rnode3", migrant, "refused.out", "0"],
            cwd="/tmp",
            input="x\n",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert refused.returncode == 125
        assert refused.stdout == ""
        assert refused.stderr == (
            "mosrun: -rnode3: node 3 is not available (-F starts it elsewhere)\n"
        )
        assert not cluster3.node_path(1, "/tmp/refused.out").exists()
        assert run_placed(cluster3, ["-F", "-rnode3"], migrant) in (1, 2)
    finally:
        cluster3.start_agent(3)
        wait_until(
            lambda: home_log(cluster3).count(up) > ups, TIMEOUT, what="node 1 to see node 3 again"
        )
