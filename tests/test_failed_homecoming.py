"""A home-coming that fails leaves the process running where it was (a real test cluster).

The deputy takes the image of a process coming home whole and has the restorer
check it before restoring it in place; when the restorer cannot be used (here:
it cannot be executed at home), the copy goes on on its node, served by its
deputy, and the failure is told on the process's stderr and in the home
agent's log.  A later home-coming succeeds.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import bring_up, migrate, node_programs, where
from support.waiting import wait_until

from mosix.native import native_path
from mosix.native_names import Program
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    made = bring_up(2, cluster=ClusterSettings(balance_interval=0))  # only the test moves it
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="module")
def counter() -> Iterator[str]:
    with node_programs("homecoming", {"line_counter": ["-O0", "line_counter.c"]}) as directory:
        yield str(directory / "line_counter")


def lines_in(cluster: LocalCluster, path: str) -> int:
    p = cluster.node_path(1, path)
    return p.read_bytes().count(b"\n") if p.exists() else 0


def test_a_failed_homecoming_leaves_the_process_running_away(
    cluster: LocalCluster,
    counter: str,
) -> None:
    out, lines = "/tmp/homecoming.out", 600
    proc = cluster.popen(
        1,
        ["mosrun", "-rnode2", counter, "write", out, str(lines)],
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    restorer = native_path(Program.RESTORER)
    mode = os.stat(restorer).st_mode
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"ready {proc.pid}\n"

        def more_lines(than: int) -> bool:
            assert proc.poll() is None, proc.communicate()
            return lines_in(cluster, out) > than

        wait_until(lambda: more_lines(5), TIMEOUT, what="its first lines", period=0.02)
        os.chmod(restorer, 0o644)  # home's restorer cannot be executed
        try:
            failed = migrate(cluster, proc.pid, "home")
        finally:
            os.chmod(restorer, mode)
        assert failed.returncode != 0, failed.stdout
        assert "stays on node 2" in failed.stderr, failed.stderr
        assert where(cluster, proc.pid) == "node2"
        seen = lines_in(cluster, out)
        wait_until(lambda: more_lines(seen + 5), TIMEOUT, what="lines after the failure")
        log = cluster.agent_log(1).read_text()
        assert re.search(rf"process {proc.pid} stays on node 2: it cannot come home: ", log)
        done = migrate(cluster, proc.pid, "home")  # the restorer back: it comes home
        assert done.returncode == 0, done.stderr
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 7, stderr
    assert stdout == "done\n"
    assert stderr == (
        f"mosrun: process {proc.pid}: cannot come home: cannot execute {restorer}: "
        "Permission denied; it goes on where it runs\n"
    )
    expected = "".join(f"line {n}\n" for n in range(1, lines + 1)).encode()
    assert cluster.node_path(1, out).read_bytes() == expected
