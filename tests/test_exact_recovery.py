"""A process resumed at home from its checkpoint after its node is lost leaves its
files as an uninterrupted run does (real test clusters; each test kills a node).

The program (cprogs/line_counter.c) writes a file line by line, appending or
writing; it is checkpointed (at home before it moves, or on node 2 where it
runs), writes more lines there, and node 2 is killed: the process resumes at
home from the checkpoint and writes those lines again.  The descriptors go back
to the checkpoint's offsets, and a file it appends to is cut back to its size
then, so the file ends byte-identical to an uninterrupted run's: no line twice.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest
from support.clusters import migrate, node_programs
from support.waiting import wait_until

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

LOST_AFTER = 6.0
TIMEOUT = 120.0
LINES = 400
OUT = "/tmp/counted"

MakeCluster = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def counter() -> Iterator[str]:
    with node_programs("recovery", {"line_counter": ["-O0", "line_counter.c"]}) as directory:
        yield str(directory / "line_counter")


def lines_in(cluster: LocalCluster) -> int:
    path = cluster.node_path(1, OUT)
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.parametrize("mode", ["append", "write"])
@pytest.mark.parametrize("taken", ["home", "away"])
def test_resumed_at_home_the_file_is_as_an_uninterrupted_run_leaves_it(
    make_cluster: MakeCluster,
    counter: str,
    mode: str,
    taken: str,
) -> None:
    settings = ClusterSettings(lost_after=LOST_AFTER, balance_interval=0)  # only the test moves it
    cluster = make_cluster(2, cluster=settings)
    proc = cluster.popen(
        1,
        ["mosrun", "-C/tmp/ck", counter, mode, OUT, str(LINES)],
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"ready {proc.pid}\n"

        def more_lines(than: int) -> Callable[[], bool]:
            def check() -> bool:
                assert proc.poll() is None, proc.communicate()
                return lines_in(cluster) > than

            return check

        wait_until(more_lines(5), TIMEOUT, what="its first lines", period=0.02)
        orders = ["checkpoint", "node2"] if taken == "home" else ["node2", "checkpoint"]
        for order in orders:
            done = migrate(cluster, proc.pid, order)
            assert done.returncode == 0, f"migrate {order}: {done.stderr}"
        assert cluster.node_path(1, "/tmp/ck.1").exists()
        at_checkpoint = lines_in(cluster)
        wait_until(more_lines(at_checkpoint + 10), TIMEOUT, what="lines after the checkpoint")
        assert lines_in(cluster) < LINES, "it ended before its node was killed"
        cluster.kill_node(2)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 7, stderr
    assert stderr.endswith("; it resumes at home from /tmp/ck.1\n"), stderr
    assert stdout == "done\n"
    expected = "".join(f"line {n}\n" for n in range(1, LINES + 1)).encode()
    assert cluster.node_path(1, OUT).read_bytes() == expected
