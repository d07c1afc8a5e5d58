"""Compressed migration images (``[cluster] compress``): exact after the moves, and on
only where the link is slow.

``cprogs/zmem.c`` holds text-like (compressible) and pseudo-random (incompressible)
memory and sums it before and after; it is moved to node 2 and back home, and must
end with the sum it started with.  The agents' log lines are the evidence of what
went on the wire: the home agent's "image compressed to node 2: IN -> OUT bytes"
(its compressor's byte counts), node 2's "image decompressed", home's "image from
node 2 decompressed" for a home-coming, and "link to node 2: N Mbit/s" for the
measure that ``auto`` decides by.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import mosrun_at_home, moved, node_programs, where
from support.waiting import wait_until

from mosix.home_agent.link_rates import SLOW_BELOW_MBIT
from mosix.native import zpipe
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not zpipe.available(), reason="no libzstd.so.1 on this machine"),
]

TEXT_MIB, RANDOM_MIB = 24, 8


@pytest.fixture(scope="module")
def zmem() -> Iterator[str]:
    with node_programs("zlink", {"zmem": ["-O2", "zmem.c"]}) as directory:
        yield str(directory / "zmem")


def compressed_sends(log: str, pid: int) -> list[tuple[int, int]]:
    found = re.findall(rf"process {pid}: image compressed to node 2: (\d+) -> (\d+) bytes", log)
    return [(int(a), int(b)) for a, b in found]


def compressed_homecomings(log: str, pid: int) -> list[str]:
    return re.findall(rf"process {pid}: image from node 2 decompressed: \d+ -> \d+ bytes", log)


def link_rates(log: str) -> list[float]:
    return [float(m) for m in re.findall(r"link to node 2: (\d+) Mbit/s", log)]


def moves(cluster: LocalCluster, zmem: str, targets: list[str]) -> int:
    """zmem started at node 1 and moved to each of ``targets`` in turn; it must end
    with the memory it started with.  Its pid."""
    with mosrun_at_home(cluster, [zmem, str(TEXT_MIB), str(RANDOM_MIB)]) as proc:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready "), ready
        for target in targets:
            moved(cluster, proc, target)
            assert where(cluster, proc.pid) == ("home" if target == "home" else "node2")
        os.kill(proc.pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert out == "done " + ready.split()[1] + "\n", (ready, out, err)
    return proc.pid


def test_compressed_away_and_home_arrives_exact(make_cluster, zmem: str) -> None:
    cluster = make_cluster(2, cluster=ClusterSettings(compress="on", balance_interval=0))
    pid = moves(cluster, zmem, ["2", "home"])
    home = cluster.agent_log(1).read_text()
    sent = compressed_sends(home, pid)
    assert len(sent) == 1, home[-3000:]
    raw, wire = sent[0]
    # the random part goes as it is, the text to a fraction
    assert (RANDOM_MIB << 20) < wire < raw // 2, sent
    assert compressed_homecomings(home, pid), home[-3000:]
    there = rf"process {pid} of node 1 .*: image decompressed: \d+ -> \d+ bytes"
    wait_until(lambda: re.search(there, cluster.agent_log(2).read_text()) is not None, timeout=30)


def test_auto_compresses_while_the_link_measures_slow(make_cluster, zmem: str) -> None:
    """The first move measures the 100 Mbit/s link (and goes as it is); the way home
    and the next move out are compressed.  Unshaped, the next compressed move measures
    the link fast, and what follows goes as it is again."""
    cluster = make_cluster(2, cluster=ClusterSettings(balance_interval=0))
    cluster.shape(2, rate_mbit=100)
    pid = moves(cluster, zmem, ["2", "home", "2", "home"])
    home = cluster.agent_log(1).read_text()
    rates = link_rates(home)
    assert rates and all(rate < SLOW_BELOW_MBIT for rate in rates), home[-3000:]
    assert len(compressed_sends(home, pid)) == 1, home[-3000:]  # the second move out
    assert len(compressed_homecomings(home, pid)) == 2, home[-3000:]
    cluster.unshape(2)
    pid = moves(cluster, zmem, ["2", "home", "2", "home"])
    home = cluster.agent_log(1).read_text()
    assert link_rates(home)[len(rates) :][-1] >= SLOW_BELOW_MBIT, home[-3000:]
    assert len(compressed_sends(home, pid)) == 1, home[-3000:]  # measured slow before it
    assert not compressed_homecomings(home, pid), home[-3000:]


def test_auto_leaves_a_fast_link_uncompressed(make_cluster, zmem: str) -> None:
    cluster = make_cluster(2, cluster=ClusterSettings(balance_interval=0))
    pid = moves(cluster, zmem, ["2", "home", "2", "home"])
    home = cluster.agent_log(1).read_text()
    rates = link_rates(home)
    assert rates and all(rate >= SLOW_BELOW_MBIT for rate in rates), home[-3000:]
    assert not compressed_sends(home, pid), home[-3000:]
    assert not compressed_homecomings(home, pid), home[-3000:]


def test_target_dying_mid_compressed_copy_leaves_the_process_at_home(
    make_cluster, zmem: str
) -> None:
    """The compressor between the capturer and a connection that breaks: the capture
    fails, the process runs on at home with its memory, and no compressor is left."""
    cluster = make_cluster(2, cluster=ClusterSettings(compress="on", balance_interval=0))
    cluster.shape(2, rate_mbit=20)  # 32 MiB of random memory: over ten seconds
    with mosrun_at_home(cluster, [zmem, "0", "32"]) as proc:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready "), ready
        migrate = cluster.popen(
            1, ["migrate", str(proc.pid), "node2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        receiving = rf"process {proc.pid} of node 1 .*: receiving its image"
        wait_until(lambda: re.search(receiving, cluster.agent_log(2).read_text()) is not None)
        cluster.kill_node(2)
        _, complaint = migrate.communicate(timeout=60)
        assert migrate.returncode != 0 and complaint.strip(), "the move to a dead node succeeded"
        assert where(cluster, proc.pid) == "home"
        os.kill(proc.pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == "done " + ready.split()[1] + "\n", (out, err)
    home = cluster.agent_log(1).read_text()
    assert f"process {proc.pid} migrated" not in home
    wait_until(lambda: not pumps_running(), timeout=30)


def pumps_running() -> list[int]:
    """The pids of mosix-zpipe processes anywhere on this machine."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "mosix-zpipe":
                        found.append(int(entry))
            except OSError:
                continue
    return found
