"""-G{class} in a real 3-node test cluster whose node 3 is another partition taking class 5.

The manual: without -G (or with -G0) a program stays in its home's partition;
-G{class} lets it go to other partitions.  Here node 3's map entry says it
takes class 5 only, so ``migrate PID 3`` moves a -G5 process and refuses a
process without -G and one with -G2, each in one line; node 2 (the home's
partition) takes them all.  Node 3 decides for itself as well: when only its
own map says so, the home's ``migrate`` offers and node 3 refuses.  The
balancer keeps to the same rule (a slow test).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.clusters import migrate, node_programs, where
from support.waiting import wait_until
from test_balancing import balancing_counters

from mosix.testcluster import LocalCluster

TIMEOUT = 120


@pytest.fixture(scope="module")
def programs() -> Iterator[Path]:
    builds = {"stepper": ["-O1", "stepper.c"], "burn": ["-O0", "burn.c"]}
    with node_programs("grid", builds) as directory:
        yield directory


@pytest.fixture(scope="module")
def stepper(programs: Path) -> Path:
    return programs / "stepper"


def partitioned(
    make_cluster: Callable[..., LocalCluster], maps: tuple[int, ...] = (1, 2, 3), **options: object
) -> LocalCluster:
    """Three nodes; node 3 in partition 2, taking -G class 5 (as the maps of ``maps`` say)."""
    cluster = make_cluster(3, **options)
    for k in maps:
        config = cluster.node_path(k, "/etc/mosix/mosixd.toml")
        text = config.read_text()
        node3 = 'name = "node3"\n'
        head, _, entry = text.rpartition(node3)  # the last: its [[cluster.node]] entry
        config.write_text(head + node3 + "partition = 2\nclasses = [5]\n" + entry)
        cluster.restart_agent(k)

    def all_up() -> bool:
        for k in maps:  # each restarted agent hears from the others
            log = cluster.agent_log(k).read_text(errors="replace")
            since = log.rsplit("listening on /run/mosix/mosixd.sock", 1)[-1]
            others = (j for j in cluster.numbers if j != k)
            if not all(f"node {j} (node{j}, {cluster.address(j)}) is up" in since for j in others):
                return False
        return True

    wait_until(all_up, TIMEOUT, what="the restarted agents hear from the others")
    return cluster


def started(cluster: LocalCluster, stepper: Path, *options: str) -> subprocess.Popen[str]:
    proc = cluster.popen(
        1,
        ["mosrun", "-L", *options, str(stepper), "/dev/null"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("step ")
    return proc


def test_another_partition_takes_only_the_classes_it_admits(
    make_cluster: Callable[..., LocalCluster], stepper: Path
) -> None:
    cluster = partitioned(make_cluster)
    procs = {opt: started(cluster, stepper, *([opt] if opt else [])) for opt in ("", "-G2", "-G5")}
    try:
        plain = migrate(cluster, procs[""].pid, "3")
        assert plain.returncode == 1
        assert plain.stderr.count("\n") == 1 and "needs -G" in plain.stderr, plain.stderr
        two = migrate(cluster, procs["-G2"].pid, "3")
        assert two.returncode == 1
        assert "does not take class 2 (-G2)" in two.stderr, two.stderr
        assert where(cluster, procs[""].pid) == where(cluster, procs["-G2"].pid) == "home"
        five = migrate(cluster, procs["-G5"].pid, "3")
        assert five.returncode == 0, five.stderr
        assert where(cluster, procs["-G5"].pid) == "node3"
        same = migrate(cluster, procs[""].pid, "2")  # its own partition: no -G needed
        assert same.returncode == 0, same.stderr
        assert where(cluster, procs[""].pid) == "node2"
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_the_target_refuses_by_its_own_map(
    make_cluster: Callable[..., LocalCluster], stepper: Path
) -> None:
    cluster = partitioned(make_cluster, maps=(3,))  # node 1 thinks node 3 is one of its own
    procs = {opt: started(cluster, stepper, *([opt] if opt else [])) for opt in ("", "-G5")}
    try:
        plain = migrate(cluster, procs[""].pid, "3")
        assert plain.returncode == 1
        assert plain.stderr.count("\n") == 1, plain.stderr
        assert "node 3 refused: this node takes no process without -G from partition 1" in (
            plain.stderr
        )
        assert where(cluster, procs[""].pid) == "home"
        five = migrate(cluster, procs["-G5"].pid, "3")
        assert five.returncode == 0, five.stderr
        assert where(cluster, procs["-G5"].pid) == "node3"
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_balancing_moves_a_process_only_where_its_class_is_taken(
    make_cluster: Callable[..., LocalCluster], programs: Path
) -> None:
    """Six CPU-bound -G2 jobs on node 1 (nodes of 0.6 processor): balanced over
    nodes 1 and 2, never onto node 3, which takes only class 5."""
    cluster = partitioned(make_cluster, cpus=0.6)
    jobs = [
        cluster.popen(
            1,
            ["mosrun", "-G2", str(programs / "burn")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    pids = [job.pid for job in jobs]

    def placed() -> list[str]:
        return [where(cluster, pid) for pid in pids]

    try:
        wait_until(lambda: placed().count("node2") >= 2, TIMEOUT, what="jobs moved to node 2")
        rounds, _ = balancing_counters(cluster)
        wait_until(
            lambda: balancing_counters(cluster)[0] >= rounds + 6,
            TIMEOUT,
            what="six more balancing rounds",
            period=0.5,
        )
        assert "node3" not in placed()
        assert not re.search(r"migrated to node 3", cluster.agent_log(1).read_text())
    finally:
        for job in jobs:
            job.kill()
            job.wait()
