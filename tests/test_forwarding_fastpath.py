"""The fast path of forwarded calls, in a real test cluster.

A dynamic program (with the preload shim) that runs on another node sends the
calls placed at home to its deputy itself, from the shim's SIGSYS handler, over
the direct channel: no user notification, no supervisor in between.  It is
on by default (``[cluster] fast_path``; false turns it off).  The
shim's exported counter ``mosix_shim_fast_calls`` says how many went that way.
A static program has no shim: its calls take the supervisor's way, as before.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import bring_up, mosrun_at_home, moved, node_programs
from support.waiting import wait_until

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

WRITES = 300
BLOCK = 64
TIMEOUT = 120


@pytest.fixture(scope="module")
def fast_cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes whose agents have the default configuration: migrated dynamic
    programs get the fast path."""
    cluster = bring_up(3)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture(scope="module")
def programs() -> Iterator[dict[str, str]]:
    builds = {
        "dynamic": ["-O2", "fastpath.c"],
        "static": ["-O2", "-static", "fastpath.c"],
        "signal": ["-O2", "fastpath_signal.c"],
        "lines": ["-O2", "fastpath_lines.c"],
        "copy": ["-O2", "fastpath_copy.c"],
    }
    with node_programs("fastpath", builds) as directory:
        yield {name: str(directory / name) for name in builds}


def run_away(cluster: LocalCluster, prog: str, out: str) -> str:
    done = cluster.run(
        1,
        ["mosrun", "-rnode2", prog, out, str(WRITES)],
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_dynamic_program_away_forwards_through_its_shim(
    fast_cluster: LocalCluster,
    programs: dict[str, str],
) -> None:
    out = "/tmp/fastpath-dynamic.out"
    words = run_away(fast_cluster, programs["dynamic"], out).split()
    assert words[:2] == ["read", str(WRITES * BLOCK)]
    # every write and read (and the opens and closes) went the fast way
    assert words[2] == "fast" and int(words[3]) >= 2 * WRITES + 4, words
    assert fast_cluster.node_path(1, out).read_bytes() == b"x" * (WRITES * BLOCK)  # at home
    assert not fast_cluster.node_path(2, out).exists()


def test_a_static_program_away_takes_the_supervisors_way(
    fast_cluster: LocalCluster,
    programs: dict[str, str],
) -> None:
    out = "/tmp/fastpath-static.out"
    assert run_away(fast_cluster, programs["static"], out) == f"read {WRITES * BLOCK} fast 0\n"
    assert fast_cluster.node_path(1, out).read_bytes() == b"x" * (WRITES * BLOCK)
    assert not fast_cluster.node_path(2, out).exists()


def blocked_in_read(pid: int) -> bool:
    """The deputy (the home process) is inside read(0, ...) for its copy: in the
    thread that serves the copy's direct channel (/proc/PID/task/TID/syscall)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "syscall").read_text().split()
        except OSError:
            continue  # a thread that just ended
        if fields[:2] == ["0", "0x0"]:
            return True
    return False


def test_a_signal_for_a_call_blocked_at_home_arrives_as_it_returns(
    fast_cluster: LocalCluster,
    programs: dict[str, str],
) -> None:
    with mosrun_at_home(fast_cluster, ["-rnode2", programs["signal"]]) as proc:
        # the deputy is the home process (same pid); wait until it serves the read
        def serving() -> bool:
            assert proc.poll() is None
            return blocked_in_read(proc.pid)

        wait_until(serving, TIMEOUT, what="the deputy to serve the read", period=0.05)
        proc.send_signal(10)  # SIGUSR1
        assert proc.stdout is not None
        stdout = proc.stdout.readline()  # stdin stays open: only the signal ends the read
        _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    words = stdout.split()
    # the read failed with EINTR, and the handler had run by the time it returned
    assert words[:7] == ["read", "-1", "Interrupted", "system", "call", "caught", "1"], stdout
    assert int(words[8]) >= 1, stdout  # the read went the fast way


def lines_written(cluster: LocalCluster, path: str) -> int:
    p = cluster.node_path(1, path)
    return p.read_text().count("\n") if p.exists() else 0


def wait_for_more_lines(cluster: LocalCluster, path: str, than: int) -> int:
    wait_until(
        lambda: lines_written(cluster, path) > than,
        TIMEOUT,
        what=f"{path}: more than {than} lines",
        period=0.05,
    )
    return lines_written(cluster, path)


def test_coming_home_in_the_middle_of_fast_calls_loses_or_repeats_none(
    fast_cluster: LocalCluster,
    programs: dict[str, str],
) -> None:
    """Every write is a fast-path call: the captures (away, then home again) meet
    one in flight, and each is done exactly once."""
    out = "/tmp/fastpath-lines.out"
    fast_after: dict[str, int] = {}  # the shim's fast calls by the end of each stay
    with mosrun_at_home(fast_cluster, ["-rnode2", programs["lines"], out], "/tmp") as proc:
        seen = wait_for_more_lines(fast_cluster, out, 0)
        for stay, target in enumerate(("home", "node2", "home")):
            moved(fast_cluster, proc, target)
            seen = wait_for_more_lines(fast_cluster, out, seen)  # it writes on after the move
            last = fast_cluster.node_path(1, out).read_text().splitlines()[-1]
            fast_after[f"{stay} {target}"] = int(last.split()[1])
        stdout, stderr = proc.communicate("", timeout=TIMEOUT)  # stdin ends: it stops
    assert proc.returncode == 0, stderr
    total = int(stdout.split()[1])
    lines = fast_cluster.node_path(1, out).read_text().splitlines()
    assert [line.split()[0] for line in lines] == [str(i) for i in range(total)]
    # away again after coming home, the restored shim still takes the fast path
    assert fast_after["1 node2"] > fast_after["0 home"], fast_after


ROUND_TRIPS = 5


def file_size(cluster: LocalCluster, path: str) -> int:
    p = cluster.node_path(1, path)
    return p.stat().st_size if p.exists() else 0


def test_reads_and_writes_stay_exact_however_often_it_comes_home(
    fast_cluster: LocalCluster,
    programs: dict[str, str],
) -> None:
    """A home file copied in small reads and writes of varying sizes, brought
    home and sent out again at arbitrary moments: the copy is the input
    repeated, byte for byte (a read done twice or lost, a short read, a write
    lost or repeated would show).  The moment of each move is jittered (not a
    synchronisation: any moment must do)."""
    source, out = "/tmp/fastpath-copy.in", "/tmp/fastpath-copy.out"
    data = random.Random(6).randbytes(40000)
    fast_cluster.node_path(1, source).write_bytes(data)
    with mosrun_at_home(fast_cluster, ["-rnode2", programs["copy"], source, out], "/tmp") as proc:
        jitter = random.Random()
        for target in ("home", "node2") * ROUND_TRIPS:
            seen = file_size(fast_cluster, out)

            def copied_more(seen: int = seen) -> bool:  # it copies on where it is
                assert proc.poll() is None, proc.communicate()
                return file_size(fast_cluster, out) > seen

            wait_until(copied_more, TIMEOUT, what=f"{out}: progress", period=0.01)
            time.sleep(jitter.uniform(0, 0.05))
            moved(fast_cluster, proc, target)
        stdout, stderr = proc.communicate("", timeout=TIMEOUT)  # stdin ends: it stops
    assert proc.returncode == 0, stderr
    copied = fast_cluster.node_path(1, out).read_bytes()
    assert stdout.split() == ["copied", str(len(copied))]
    rounds = len(copied) // len(data) + 1
    assert copied == (data * rounds)[: len(copied)]


def test_without_fast_path_a_dynamic_program_takes_the_supervisors_way(
    make_cluster,
    programs: dict[str, str],
) -> None:
    cluster = make_cluster(2, cluster=ClusterSettings(fast_path=False))
    out = "/tmp/fastpath-off.out"
    assert run_away(cluster, programs["dynamic"], out) == f"read {WRITES * BLOCK} fast 0\n"
    assert cluster.node_path(1, out).read_bytes() == b"x" * (WRITES * BLOCK)
