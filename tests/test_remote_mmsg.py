"""sendmmsg and recvmmsg of a process running on another node, in a real test cluster.

The table cannot marshal an array of msghdr; mosix-remote forwards one sendmsg
or recvmsg per message (csrc/remote/remote_mmsg.c).  glibc's resolver sends its
queries with sendmmsg, so without this a migrated program cannot look up a
host name.  The program (tests/cprogs/mmsg.c) talks between two UDP sockets
of its own, which live at home; its output on node 2 must be the same as at
home.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import node_programs

from mosix.testcluster import LocalCluster

TIMEOUT = 120


@pytest.fixture(scope="module")
def mmsg() -> Iterator[str]:
    with node_programs("mmsg", {"mmsg": ["-O1", "mmsg.c"]}) as directory:
        yield str(directory / "mmsg")


def run(cluster: LocalCluster, argv: list[str]) -> tuple[int, str]:
    proc = cluster.popen(1, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    return proc.pid, stdout


def test_mmsg_calls_on_another_node_do_what_they_do_at_home(
    cluster3: LocalCluster,
    mmsg: str,
) -> None:
    _, native = run(cluster3, [mmsg])
    assert native.startswith("sendmmsg: 3, lengths 3 5 9\nrecvmmsg: 3\n"), native
    pid, away = run(cluster3, ["mosrun", "-2", mmsg])
    assert away == native
    assert f"process {pid} migrated to node 2" in cluster3.agent_log(1).read_text()
