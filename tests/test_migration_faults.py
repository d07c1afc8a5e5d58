"""Migration under faults, in real test clusters (one per test: each harms a node).

- the target dies while the image travels: the process runs on at home;
- the node a process runs on dies (killed, or silently: cut off first): the
  process is reported lost at home, one line naming the node, SIGKILL;
- the deputy is killed: the remote copy is killed, the target forgets it;
- the network is cut for less than lost_after: nothing is lost; for longer:
  the process is lost at home and its copy ended on the target.

The program (cprogs/faulty.c) prints "ready PID", waits for a line on stdin,
then prints "step N" after each stretch of computing.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from support.clusters import node_programs, reads_stdin
from support.waiting import wait_until

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

LOST_AFTER = 6.0  # the clusters' [cluster] lost_after
NOTICE_BOUND = LOST_AFTER * 2 + 10  # lost_after, a probe interval, a busy shared machine
EVENT_TIMEOUT = 60.0  # for things that happen without a deliberate delay
LOST_LINE = re.compile(
    r"mosrun: process (\d+): node 2 \(node2, 10\.77\.0\.2\), where it ran, is gone: "
)

MakeCluster = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def faulty() -> Iterator[str]:
    with node_programs("faulty", {"faulty": ["-O0", "faulty.c"]}) as directory:
        yield str(directory / "faulty")


def new_cluster(
    make_cluster: MakeCluster,
    nodes: int = 2,
) -> LocalCluster:
    return make_cluster(nodes, cluster=ClusterSettings(lost_after=LOST_AFTER))


class Program:
    """A mosrun started inside a node, its stdout read line by line."""

    def __init__(self, cluster: LocalCluster, k: int, argv: list[str]) -> None:
        self.proc = cluster.popen(
            k,
            argv,
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._rest = b""

    def line(self, timeout: float = EVENT_TIMEOUT) -> str:
        """The next line of its stdout ('' at its end)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._rest:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no line from process {self.pid} within {timeout} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            self._rest += chunk
        raw, self._rest = self._rest.split(b"\n", 1)
        text = raw.decode()
        self.lines.append(text)
        return text

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = EVENT_TIMEOUT) -> tuple[list[str], str, int]:
        """Its remaining stdout lines, its stderr and its status (after it ends)."""
        while self.line(timeout):
            pass
        assert self.proc.stderr is not None
        status = self.proc.wait(timeout)
        return self.lines, self.proc.stderr.read().decode(), status


def wait_for_log(
    cluster: LocalCluster, k: int, pattern: str, timeout: float = EVENT_TIMEOUT
) -> str:
    """The first line of node k's agent log that matches ``pattern`` (waits for it)."""
    wanted = re.compile(pattern)
    found: list[str] = []

    def seen() -> bool:
        lines = cluster.agent_log(k).read_text(errors="replace").splitlines()
        found[:] = [line for line in lines if wanted.search(line)][:1]
        return bool(found)

    wait_until(seen, timeout, what=f"{pattern!r} in node {k}'s log")
    return found[0]


def copy_pid(cluster: LocalCluster, k: int, home_pid: int) -> int:
    """The pid of the copy of ``home_pid`` on node k (from its agent's log)."""
    line = wait_for_log(cluster, k, rf"process {home_pid} of node 1 .*runs here as \d+")
    return int(line.rsplit(" ", 1)[1])


def ends_within(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (anywhere in the shared pid namespace) ends in time."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def started_on_node2(cluster: LocalCluster, faulty: str, steps: int, status: int) -> Program:
    """faulty started with -rnode2, running there and past its first step."""
    prog = Program(cluster, 1, ["mosrun", "-rnode2", faulty, "0", str(steps), str(status)])
    assert prog.line() == f"ready {prog.pid}"
    copy_pid(cluster, 2, prog.pid)
    prog.go()
    assert prog.line() == "step 1"
    return prog


# ---------------------------------------------------------------- the tests


def test_target_dies_mid_migration(
    make_cluster: MakeCluster,
    faulty: str,
) -> None:
    cluster = new_cluster(make_cluster)
    prog = Program(cluster, 1, ["mosrun", faulty, "160", "3", "7"])
    assert prog.line() == f"ready {prog.pid}"
    cluster.shape(2, rate_mbit=100)  # 160 MB take over ten seconds to go
    migrate = cluster.popen(
        1, ["migrate", str(prog.pid), "node2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_for_log(cluster, 2, rf"process {prog.pid} of node 1 .*receiving its image")
    cluster.kill_node(2)
    _, complaint = migrate.communicate(timeout=EVENT_TIMEOUT)
    assert migrate.returncode != 0, "the migration to a dead node succeeded"
    assert complaint.strip(), "migrate said nothing about the failure"
    prog.go()
    lines, stderr, status = prog.finish()
    assert lines == [f"ready {prog.pid}", "step 1", "step 2", "step 3", "memory intact"]
    assert status == 7, stderr
    assert stderr == ""
    assert f"process {prog.pid} migrated" not in cluster.agent_log(1).read_text()


@pytest.mark.parametrize("how", ["killed", "silent"])
def test_remote_node_dies(
    make_cluster: MakeCluster,
    faulty: str,
    how: str,
) -> None:
    cluster = new_cluster(make_cluster)
    prog = started_on_node2(cluster, faulty, 0, 0)
    if how == "silent":
        cluster.cut(2)  # not a word from it any more: no FIN, no RST
    started = time.monotonic()
    cluster.kill_node(2)
    _, stderr, status = prog.finish(timeout=NOTICE_BOUND)
    noticed = time.monotonic() - started
    assert status == -signal.SIGKILL, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and LOST_LINE.match(lines[0]), stderr
    assert int(LOST_LINE.match(lines[0]).group(1)) == prog.pid  # type: ignore[union-attr]
    print(f"{how}: lost process reported after {noticed:.2f} s")
    if how == "silent":
        assert noticed < NOTICE_BOUND


def test_lost_process_resumes_from_its_checkpoint(
    make_cluster: MakeCluster,
    faulty: str,
) -> None:
    cluster = new_cluster(make_cluster)
    prog = Program(cluster, 1, ["mosrun", "-C/tmp/ck", faulty, "64", "30", "9"])
    assert prog.line() == f"ready {prog.pid}"
    for order in ("checkpoint", "node2"):  # a checkpoint at home, waiting for its line
        done = cluster.run(1, ["migrate", str(prog.pid), order], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert cluster.node_path(1, "/tmp/ck.1").exists()
    copy_pid(cluster, 2, prog.pid)
    prog.go()
    assert prog.line() == "step 1"
    cluster.kill_node(2)
    prog.go()  # for the process resumed from the checkpoint: it waits for its line again
    lines, stderr, status = prog.finish()
    assert status == 9, stderr
    errors = stderr.splitlines()
    assert len(errors) == 1 and LOST_LINE.match(errors[0]), stderr
    assert errors[0].endswith("; it resumes at home from /tmp/ck.1")
    resumed = [f"step {i}" for i in range(1, 31)] + ["memory intact"]
    before = lines[: len(lines) - len(resumed)]
    assert lines[len(before) :] == resumed
    assert before == [f"ready {prog.pid}"] + [f"step {i}" for i in range(1, len(before))]
    assert len(before) < 31, "the copy ended before its node was killed"
    assert f"process {prog.pid} resumes at home from /tmp/ck.1" in cluster.agent_log(1).read_text()


def test_killed_deputy_kills_the_copy(
    make_cluster: MakeCluster,
    faulty: str,
) -> None:
    cluster = new_cluster(make_cluster)
    prog = started_on_node2(cluster, faulty, 0, 0)
    copy = copy_pid(cluster, 2, prog.pid)
    assert copy in cluster.processes(2)
    os.kill(prog.pid, signal.SIGKILL)
    assert prog.proc.wait(EVENT_TIMEOUT) == -signal.SIGKILL
    assert ends_within(copy, EVENT_TIMEOUT), f"the copy {copy} outlived its deputy"
    wait_for_log(cluster, 2, rf"process {prog.pid} of node 1 .*: no copy of it here now")
    assert copy not in cluster.processes(2)


def test_short_network_cut_loses_nothing(
    make_cluster: MakeCluster,
    faulty: str,
) -> None:
    cluster = new_cluster(make_cluster)
    prog = started_on_node2(cluster, faulty, 30, 5)
    copy = copy_pid(cluster, 2, prog.pid)
    cluster.cut(2)
    time.sleep(LOST_AFTER * 0.6)  # the cut's length is what is tested (over dead_after)
    cluster.heal(2)
    lines, stderr, status = prog.finish()
    assert status == 5, stderr
    assert lines == [f"ready {prog.pid}", *(f"step {i}" for i in range(1, 31)), "memory intact"]
    assert stderr == ""
    assert ends_within(copy, EVENT_TIMEOUT)


def test_long_network_cut_ends_both_sides(
    make_cluster: MakeCluster,
    faulty: str,
) -> None:
    cluster = new_cluster(make_cluster)
    prog = started_on_node2(cluster, faulty, 0, 0)
    copy = copy_pid(cluster, 2, prog.pid)
    cluster.cut(2)
    started = time.monotonic()
    _, stderr, status = prog.finish(timeout=NOTICE_BOUND)
    noticed = time.monotonic() - started
    assert status == -signal.SIGKILL, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and LOST_LINE.match(lines[0]), stderr
    # the target, cut off as well, ends the copy whose home is gone
    assert ends_within(copy, NOTICE_BOUND), f"the copy {copy} lingers on node 2"
    wait_for_log(cluster, 2, rf"process {prog.pid} of node 1 .*: no copy of it here now")
    print(f"long cut: lost process reported after {noticed:.2f} s")
    cluster.heal(2)


@pytest.mark.parametrize("how", ["killed", "silent"])
def test_deputy_blocked_at_home_notices_the_loss(
    make_cluster: MakeCluster,
    faulty: str,
    how: str,
) -> None:
    """The copy waits for a line of its home stdin (the deputy is in read(0)) when its
    node dies: the loss is still reported within lost_after, with no line typed."""
    cluster = new_cluster(make_cluster)
    prog = Program(cluster, 1, ["mosrun", "-rnode2", faulty, "0", "1", "0"])
    assert prog.line() == f"ready {prog.pid}"  # printed on node 2, then it reads stdin
    copy_pid(cluster, 2, prog.pid)
    wait_until(lambda: reads_stdin(prog.pid), EVENT_TIMEOUT, what="the deputy reads stdin")
    if how == "silent":
        cluster.cut(2)
    cluster.kill_node(2)
    _, stderr, status = prog.finish(timeout=NOTICE_BOUND)
    assert status == -signal.SIGKILL, stderr
    assert LOST_LINE.match(stderr), stderr
