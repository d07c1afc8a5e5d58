"""Live migration: the memory goes in rounds while the process runs, and arrives exact.

``cprogs/dirtier.c`` writes its memory all the time (random words, pages of zeros,
pages dropped with MADV_DONTNEED) and keeps a running checksum of what it wrote; moved
from node 1 to node 2 while it writes, it sums its memory again there: the pages it
wrote during the rounds must all have followed it.  The home agent's log says how
many rounds went (``pre-copy rounds=N``): at least the first copy and one of the
pages written meanwhile, and that the final image, made with the process held, carried
only a small part of its memory.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator

import pytest
from support.clusters import mosrun_at_home, moved, node_programs, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster


@pytest.fixture(scope="module")
def dirtier() -> Iterator[str]:
    with node_programs("livemig", {"dirtier": ["-O2", "dirtier.c"]}) as directory:
        yield str(directory / "dirtier")


@pytest.fixture(scope="module")
def idlemem() -> Iterator[str]:
    with node_programs("livemig-idle", {"idlemem": ["-O2", "idlemem.c"]}) as directory:
        yield str(directory / "idlemem")


def precopy_line(cluster: LocalCluster, pid: int) -> tuple[int, int, int, int]:
    """The home agent's last pre-copy line for ``pid``: rounds, pages sent ahead,
    unreliable, pages of the final image."""
    log = cluster.agent_log(1).read_text()
    found = re.findall(
        rf"process {pid}: pre-copy rounds=(\d+) pages=(\d+) unreliable=(\d) final_pages=(\d+)",
        log,
    )
    assert found, log[-2000:]
    rounds, pages, unreliable, final = map(int, found[-1])
    return rounds, pages, unreliable, final


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
    line = rounds, pages, unreliable, final = precopy_line(cluster3, proc.pid)
    assert rounds >= 2 and pages >= 128 * 256 // 2, line  # the memory, then what it wrote
    assert unreliable == 0 and final < 128 * 256 // 4, line  # the rest only, held


def test_a_quiet_process_moves_live_too(cluster3: LocalCluster) -> None:
    """A process that writes nothing while it moves: the rounds find nothing to send
    after the first, and nothing made them unreliable (its copies are not taken for
    children of its own)."""
    with mosrun_at_home(cluster3, ["-L", "sleep", "30"]) as proc:
        wait_until(lambda: where(cluster3, proc.pid) == "home", timeout=30)
        moved(cluster3, proc, "2")
        log = cluster3.agent_log(1).read_text()
        found = re.findall(rf"process {proc.pid}: pre-copy rounds=(\d+) .*unreliable=(\d)", log)
        proc.kill()
    assert found and int(found[-1][0]) >= 1 and found[-1][1] == "0", log[-2000:]


IDLE_MIB = 64


def test_an_idle_process_sends_its_memory_once(cluster3: LocalCluster, idlemem: str) -> None:
    """A process that writes none of its 64 MiB while it moves: the rounds and the
    final image together carry about that memory once (plus its libraries, whole in a
    move), and it arrives exact.  Pages it never touched were once counted as sent,
    then as dropped since: ~8 MiB of zeros (an 8 MiB area the shim reserves, most of
    the heap and stack) went again in every round and in the final image (95 MB for
    64 MiB)."""
    with mosrun_at_home(cluster3, ["-L", idlemem, str(IDLE_MIB)]) as proc:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready[0] == "ready", ready
        moved(cluster3, proc, "2")
        assert where(cluster3, proc.pid) == "node2"
        os.kill(proc.pid, signal.SIGUSR1)  # to the deputy, which passes it on
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.split() == ["done", ready[1]], (out, err)
    line = rounds, pages, unreliable, final = precopy_line(cluster3, proc.pid)
    memory = IDLE_MIB * 256
    assert rounds >= 1 and unreliable == 0 and memory <= pages, line
    assert pages + final < memory + 1024, line  # once, plus 4 MiB (its libraries: ~2.5)


def cpu_seconds(pid: int) -> float:
    """User and system time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_held_deputy_waits_without_burning_a_cpu(cluster3: LocalCluster, dirtier: str) -> None:
    """While its copy is checkpointed away, the deputy at home holds its direct-channel
    servers, and they wait quietly.  They once woke one another without end while
    held: a CPU per held deputy, and with two processes coming home at once every
    other task of the machine starved for a minute or two."""
    with mosrun_at_home(cluster3, ["-L", "-C/tmp/held", dirtier, "384"]) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        moved(cluster3, proc, "2")
        before, start = cpu_seconds(proc.pid), time.monotonic()  # the deputy: the home pid
        done = cluster3.run(
            1,
            ["migrate", str(proc.pid), "checkpoint"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        used, took = cpu_seconds(proc.pid) - before, time.monotonic() - start
        os.kill(proc.pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=120)
    assert done.returncode == 0, done.stderr
    assert proc.returncode == 0 and out.startswith("done "), (out, err)
    assert used < 0.25 * took + 0.05, f"the deputy used {used:.2f} s of CPU in {took:.2f} s"
