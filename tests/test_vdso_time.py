"""Clocks of a migrated process are its home's, also when read through the vDSO.

glibc reads the clocks through the vDSO without a system call; the restorer
of a migrated copy makes the vDSO's clock functions system calls, which the
forward filter sends home (csrc/common/vdso_time.h), unless ``mosrun -t`` (``-T``
reverses it).  The nodes of the test cluster share one kernel, so here each
has its own time namespace (``clock_offsets``): node k's CLOCK_MONOTONIC and
CLOCK_BOOTTIME run k * 1000 s ahead of the host's, and the value a program
prints says whose clock it read.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import bring_up, migrate, node_programs, where

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings
from mosix.testcluster.clocks import OFFSET_STEP

TIMEOUT = 120


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes with their own clocks; no automatic balancing (the moves are the test's)."""
    made = bring_up(3, cluster=ClusterSettings(balance_interval=0), clock_offsets=True)
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="module")
def programs() -> Iterator[Path]:
    builds = {"clocks": ["-O1", "clocks.c"], "clocks-static": ["-O1", "-static", "clocks.c"]}
    with node_programs("vdsotime", builds) as directory:
        yield directory


def clock_node(seconds: float) -> int:
    """Whose CLOCK_MONOTONIC a value read just now is: the node whose offset it carries."""
    return round((seconds - time.monotonic()) / OFFSET_STEP)


class Reader:
    """The clocks program, asked for one line of clock values at a time."""

    def __init__(self, cluster: LocalCluster, argv: list[str]) -> None:
        self.proc = cluster.popen(
            1,
            argv,
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, float]:
        """The program's clocks now: mono and boot (vDSO), raw (system call), cpu, time."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("x\n")
        self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        assert words[:1] == ["mono"], f"unexpected output {words}: {self.end()[1]}"
        return {words[i]: float(words[i + 1]) for i in range(0, len(words), 2)}

    def clocks_of(self) -> tuple[int, int, int]:
        """Whose clock the program read through the vDSO (monotonic, boot time) and raw."""
        c = self.read()
        return clock_node(c["mono"]), clock_node(c["boot"]), clock_node(c["raw"])

    def end(self) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return out, err


def move(cluster: LocalCluster, pid: int, target: str) -> None:
    done = migrate(cluster, pid, target)
    assert done.returncode == 0, f"migrate {pid} {target}: {done.stderr}"


def test_the_nodes_have_their_own_clocks(cluster: LocalCluster, programs: Path) -> None:
    for k in cluster.numbers:
        run = cluster.run(
            k, [str(programs / "clocks")], input="x\n", capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        words = run.stdout.split()
        assert [clock_node(float(words[i])) for i in (1, 3, 5)] == [k, k, k], run.stdout


@pytest.mark.parametrize(
    ("program", "placed"),
    [("clocks", True), ("clocks-static", False)],  # a static program has no start gate: moved
)
@pytest.mark.parametrize(("options", "clock_of"), [([], 1), (["-t"], 2), (["-t", "-T"], 1)])
def test_a_program_on_another_node_reads_homes_clock_unless_t(
    cluster: LocalCluster,
    programs: Path,
    program: str,
    placed: bool,
    options: list[str],
    clock_of: int,
) -> None:
    start = ["-rnode2"] if placed else []
    reader = Reader(cluster, ["mosrun", *start, *options, str(programs / program)])
    try:
        if not placed:
            assert reader.clocks_of() == (1, 1, 1)
            move(cluster, reader.proc.pid, "2")
        assert reader.clocks_of() == (clock_of,) * 3
        assert where(cluster, reader.proc.pid) == "node2"
        assert reader.clocks_of() == (clock_of,) * 3
    finally:
        out, err = reader.end()
    assert reader.proc.returncode == 0, err
    assert out == "backwards 0\n"


@pytest.mark.parametrize("options", [[], ["-t"]])
def test_the_clock_follows_the_process_home_and_on(
    cluster: LocalCluster, programs: Path, options: list[str]
) -> None:
    """Moved while it spins on the clock: out, home, to another node, home again."""
    reader = Reader(cluster, ["mosrun", *options, str(programs / "clocks")])
    pid = reader.proc.pid
    try:
        assert reader.clocks_of() == (1, 1, 1)
        for target, node in [("2", 2), ("home", 1), ("3", 3), ("home", 1), ("2", 2)]:
            move(cluster, pid, target)
            assert where(cluster, pid) == ("home" if node == 1 else f"node{node}")
            expected = node if options else 1
            assert reader.clocks_of() == (expected,) * 3, f"on node {node}"
    finally:
        out, err = reader.end()
    assert reader.proc.returncode == 0, err
    if options:  # -t: each node's own clock; it went back each time it came home
        assert out != "backwards 0\n"
    else:
        assert out == "backwards 0\n"
