"""Migration in a real test cluster (network + mount namespaces, one mosixd each).

A program started with ``mosrun -r{node}`` runs there, while its home node keeps
its identity: it reads the home's stdin, writes the home's stdout, its files
appear only in the home's private /tmp, getpid() is the home pid, and the exit
status comes back through the deputy to the waiting parent.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import node_programs

from mosix.testcluster import LocalCluster


@pytest.fixture(scope="module")
def migrant() -> Iterator[str]:
    with node_programs("migrant", {"migrant": ["-O0", "migrant.c"]}) as directory:
        yield str(directory / "migrant")


def test_started_on_another_node_keeps_its_home(cluster3: LocalCluster, migrant: str) -> None:
    out = "/tmp/migrant.out"
    proc = cluster3.popen(
        1,
        ["mosrun", "-rnode2", migrant, out, "5"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate("hello\n", timeout=120)
    assert proc.returncode == 5, stderr
    expected_sum = sum(range(200000000))
    assert stdout == f"got hello pid {proc.pid} sum {expected_sum}\n"  # getpid() is home's
    assert cluster3.node_path(1, out).read_text() == f"hello {expected_sum}\n"
    assert not cluster3.node_path(2, out).exists()  # written through the deputy, at home
    home_log = cluster3.agent_log(1).read_text()
    target_log = cluster3.agent_log(2).read_text()
    assert f"process {proc.pid} migrated to node 2" in home_log
    assert f"process {proc.pid} of node 1" in target_log
