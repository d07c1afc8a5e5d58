"""A process blocked in a call served at home can still move, in a real test cluster.

The program (tests/cprogs/migrant.c) starts on node 2 and waits for a line of
its home stdin: the deputy at home is blocked in read(0).  ``migrate`` must
still bring it home or send it on: the deputy's read is interrupted (it had
read nothing), the copy's read is made again where the process goes, and the
line typed afterwards reaches it there.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import migrate, node_programs, reads_stdin
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

TIMEOUT = 120


@pytest.fixture(scope="module")
def migrant() -> Iterator[str]:
    with node_programs("blocked", {"migrant": ["-O0", "migrant.c"]}) as directory:
        yield str(directory / "migrant")


@pytest.mark.parametrize(("target", "logged"), [("home", "came home from node 2"), ("3", "")])
def test_a_process_waiting_for_its_home_stdin_moves(
    cluster3: LocalCluster,
    migrant: str,
    target: str,
    logged: str,
) -> None:
    out = f"/tmp/blocked-{target}.out"
    proc = cluster3.popen(
        1,
        ["mosrun", "-2", migrant, out, "7"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    try:
        wait_until(
            lambda: f"process {proc.pid} migrated to node 2" in cluster3.agent_log(1).read_text(),
            TIMEOUT,
            what="the program runs on node 2",
        )
        wait_until(lambda: reads_stdin(proc.pid), TIMEOUT, what="the deputy reads stdin at home")
        moved = migrate(cluster3, proc.pid, target)
        assert moved.returncode == 0, moved.stderr
        stdout, stderr = proc.communicate("hello\n", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 7, stderr
    total = sum(range(200000000))
    assert stdout == f"got hello pid {proc.pid} sum {total}\n"
    assert cluster3.node_path(1, out).read_text() == f"hello {total}\n"
    home_log = cluster3.agent_log(1).read_text()
    assert f"process {proc.pid} {logged or 'migrated to node 3'}" in home_log
