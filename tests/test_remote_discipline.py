"""-u / -e / -w for a process running on another node, in a real 3-node test cluster.

The same program (tests/cprogs/refused.c) makes an unsupported call at home, after
``mosrun -r node2`` and after ``migrate PID 2``; what its parent sees (exit status or
death signal, stdout) and the message on its home stderr must be the same in all
three places: by default killed by SIGKILL with the guard's message, under -e the call
fails with ENOSYS silently, under -w with ENOSYS and the message.  On the remote node
the copy's listener is mosix-remote's, which applies the mode (remote_discipline.c)
and writes the message home through the deputy.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.clusters import bring_up, migrate, node_programs, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

TIMEOUT = 120
ENOSYS = 38
SIGKILL_STATUS = -9  # the parent's wait(): killed by SIGKILL
MESSAGE = "mosrun: {comm}[PID]: unsupported system call {name} ({nr}): "
KILLED, FAILS = "killed (mosrun -e lets it continue)", "fails with ENOSYS"
CALLS = {  # the program's call -> (system call, number)
    "personality": ("personality", 135),
    "raw-personality": ("personality", 135),
    "prio-parent": ("getpriority", 140),
}


@pytest.fixture(scope="module")
def programs() -> Iterator[Path]:
    builds = {
        "refused": ["-O1", "-pthread", "refused.c"],
        "refused-static": ["-O1", "-pthread", "-static", "refused.c"],
    }
    with node_programs("refused", builds) as directory:
        yield directory


@pytest.fixture(scope="module")
def fast_cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes whose agents give migrated dynamic programs the fast path."""
    cluster = bring_up(3, cluster=ClusterSettings(fast_path=True))
    try:
        yield cluster
    finally:
        cluster.down()


@dataclass(frozen=True)
class Seen:
    """What the parent at home saw: status, stdout, stderr (the home pid as PID)."""

    status: int
    stdout: str
    stderr: str


def run(cluster: LocalCluster, program: Path, mode: str, call: str, place: str) -> Seen:
    """Start ``program call`` under ``mosrun mode`` at node 1, place it, then let it call."""
    placement = ["-rnode2"] if place == "r2" else []
    proc = cluster.popen(
        1,
        ["mosrun", *placement, *([mode] if mode else []), str(program), call],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = proc.stdout.readline()
        assert ready == "ready\n", ready
        if place == "migrate":
            moved = migrate(cluster, proc.pid, "2")
            assert moved.returncode == 0, moved.stderr
        # where it makes the call (it waits for our line, blocked in a read served at home)
        assert where(cluster, proc.pid) == ("home" if place == "home" else "node2")
        stdout, stderr = proc.communicate("go\n", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Seen(proc.returncode, ready + stdout, stderr.replace(f"[{proc.pid}]", "[PID]"))


def expected(comm: str, mode: str, call: str) -> Seen:
    name, nr = CALLS[call]
    message = MESSAGE.format(comm=comm, name=name, nr=nr)
    if mode == "-e":
        return Seen(0, f"ready\n{call}: ret=-1 errno={ENOSYS}\nalive\n", "")
    if mode == "-w":
        return Seen(0, f"ready\n{call}: ret=-1 errno={ENOSYS}\nalive\n", message + FAILS + "\n")
    return Seen(SIGKILL_STATUS, "ready\n", message + KILLED + "\n")


@pytest.mark.parametrize("place", ["r2", "migrate"])
@pytest.mark.parametrize("mode", ["", "-e", "-w"], ids=["default", "e", "w"])
@pytest.mark.parametrize(
    ("kind", "call"),
    [
        ("refused", "personality"),
        ("refused", "raw-personality"),
        ("refused", "prio-parent"),
        ("refused-static", "personality"),
    ],
)
def test_unsupported_call_away_gets_what_it_gets_at_home(
    cluster3: LocalCluster,
    programs: Path,
    kind: str,
    call: str,
    mode: str,
    place: str,
) -> None:
    if kind == "refused-static" and place == "r2":
        pytest.skip("a static program has no start gate: -r moves it after it starts")
    want = expected(kind[:15], mode, call)
    at_home = run(cluster3, programs / kind, mode, call, "home")
    assert at_home == want
    away = run(cluster3, programs / kind, mode, call, place)
    assert away == at_home


@pytest.mark.parametrize("mode", ["", "-e", "-w"], ids=["default", "e", "w"])
@pytest.mark.parametrize("call", ["personality", "raw-personality"])
def test_the_fast_path_leaves_unsupported_calls_to_the_supervisor(
    fast_cluster: LocalCluster,
    programs: Path,
    call: str,
    mode: str,
) -> None:
    """With the shim's fast path (calls placed at home trap into the program itself), the
    calls the discipline refuses still reach mosix-remote and get what they get at home."""
    want = expected("refused", mode, call)
    assert run(fast_cluster, programs / "refused", mode, call, "home") == want
    assert run(fast_cluster, programs / "refused", mode, call, "migrate") == want


@pytest.mark.parametrize("place", ["home", "migrate"])
def test_priority_of_itself_away_is_its_own(
    cluster3: LocalCluster,
    programs: Path,
    place: str,
) -> None:
    """setpriority/getpriority(PRIO_PROCESS, getpid()): the home pid names the process
    itself there too (the copy gets nice 7, not the deputy or whatever has that pid)."""
    seen = run(cluster3, programs / "refused", "", "prio-self", place)
    assert seen == Seen(0, "ready\nprio-self: ret=707 errno=0\nalive\n", "")


def test_the_message_names_the_remote_copy_by_its_home_pid(
    cluster3: LocalCluster,
    programs: Path,
) -> None:
    """The -w line comes out on the home stderr, with the home pid, once."""
    proc = cluster3.popen(
        1,
        ["mosrun", "-rnode2", "-w", str(programs / "refused"), "personality"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate("go\n", timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    assert stdout == f"ready\npersonality: ret=-1 errno={ENOSYS}\nalive\n"
    assert re.fullmatch(
        rf"mosrun: refused\[{proc.pid}\]: unsupported system call personality \(135\): "
        r"fails with ENOSYS\n",
        stderr,
    )
    assert f"process {proc.pid} migrated to node 2" in cluster3.agent_log(1).read_text()


@pytest.mark.parametrize("kind", ["refused", "refused-static"])
def test_a_pinned_call_away_brings_the_process_home_where_it_runs(
    cluster3: LocalCluster,
    programs: Path,
    kind: str,
) -> None:
    """What would pin the process (locked pages) is never made on the remote node:
    mosix-remote asks to come home (RD_HOME), and the call is made again there."""
    at_home = run(cluster3, programs / kind, "", "mlock", "home")
    assert at_home == Seen(0, "ready\nmlock: ret=0 errno=0\nalive\n", "")
    before = len(cluster3.agent_log(1).read_text())
    away = run(cluster3, programs / kind, "", "mlock", "migrate")
    assert away == at_home
    wait_until(
        lambda: "came home from node 2" in cluster3.agent_log(1).read_text()[before:],
        timeout=TIMEOUT,
        what="the home agent logs its return",
    )


@pytest.mark.parametrize("kind", ["refused", "refused-static"])
def test_a_thread_made_away_is_made_where_the_process_runs(
    cluster3: LocalCluster,
    programs: Path,
    kind: str,
) -> None:
    """A thread no longer pins a process (threaded processes migrate): one made on
    the remote node is made there, and the process does not come home for it."""
    at_home = run(cluster3, programs / kind, "", "thread", "home")
    assert at_home == Seen(0, "ready\nthread: ret=0 errno=0\nalive\n", "")
    before = len(cluster3.agent_log(1).read_text())
    away = run(cluster3, programs / kind, "", "thread", "migrate")
    assert away == at_home
    log = cluster3.agent_log(1).read_text()[before:]
    assert "migrated to node 2" in log and "came home" not in log, log
