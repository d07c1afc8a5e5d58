"""Live migration: the memory goes in rounds while the process runs, and arrives exact.

``cprogs/dirtier.c`` writes its memory all the time (random words, pages of zeros,
pages dropped with MADV_DONTNEED) and keeps a running checksum of what it wrote; moved
from node 1 to node 2 while it writes, it sums its memory again there: the pages it
wrote during the rounds must all have followed it.  The home agent's log says how
many rounds went (``pre-copy rounds=N``): at least the first copy and one of the
pages written meanwhile.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest
from support.clusters import mosrun_at_home, moved, node_programs, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster


@pytest.fixture(scope="module")
def dirtier() -> Iterator[str]:
    with node_programs("livemig", {"dirtier": ["-O2", "dirtier.c"]}) as directory:
        yield str(directory / "dirtier")


def test_memory_written_during_the_rounds_arrives_exact(
    cluster3: LocalCluster, dirtier: str
) -> None:
    with mosrun_at_home(cluster3, ["-L", dirtier, "128"]) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        moved(cluster3, proc, "2")
        assert where(cluster3, proc.pid) == "node2"
        os.kill(proc.pid, signal.SIGUSR1)  # to the deputy, which passes it on
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    assert out.startswith("done "), out
    log = cluster3.agent_log(1).read_text()
    found = re.findall(rf"process {proc.pid}: pre-copy rounds=(\d+) pages=(\d+)", log)
    assert found, log[-2000:]
    rounds, pages = map(int, found[-1])
    assert rounds >= 2 and pages >= 128 * 256 // 2, found  # the memory, then what it wrote


def test_a_program_that_dirties_nothing_moves_in_one_round(
    cluster3: LocalCluster, dirtier: str
) -> None:
    """Sanity of the counter: it counts rounds, not attempts (a quiet process has
    nothing to send after the first)."""
    with mosrun_at_home(cluster3, ["-L", "sleep", "30"]) as proc:
        wait_until(lambda: where(cluster3, proc.pid) == "home", timeout=30)
        moved(cluster3, proc, "2")
        log = cluster3.agent_log(1).read_text()
        found = re.findall(rf"process {proc.pid}: pre-copy rounds=(\d+)", log)
        proc.kill()
    assert found and int(found[-1]) >= 1, log[-2000:]
