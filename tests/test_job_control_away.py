"""Job control and freezing of a process that runs on another node, in a real test cluster.

SIGTSTP (what MOSIX users send instead of SIGSTOP) to the home pid stops the
copy on node 2 and the home process (its deputy) with the same signal, so the
parent's wait (WUNTRACED) sees the program's stop; SIGCONT continues both.
``migrate PID chkstop`` stops it with SIGSTOP, as at home.  SIGINT ends it
with SIGINT.  ``migrate PID freeze`` brings it home and freezes it there;
``continue`` resumes it at home.  The program (cprogs/faulty.c) prints "ready PID", waits for a
line, then "step N" after each stretch of computing.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.clusters import COMMAND_TIMEOUT, bring_up, migrate, node_programs
from support.waiting import wait_until
from test_migration_faults import EVENT_TIMEOUT, Program, copy_pid

from mosix.sysinfo import proc_info
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

STEPS, STATUS = 100, 7


@pytest.fixture(scope="module")
def faulty() -> Iterator[str]:
    with node_programs("jobctl", {"faulty": ["-O0", "faulty.c"]}) as directory:
        yield str(directory / "faulty")


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    made = bring_up(2, cluster=ClusterSettings(lost_after=6.0))
    try:
        yield made
    finally:
        made.down()


class Child(Program):
    """A mosrun in a process group of its own (this test is its parent, in another
    group of the same session: the group is not orphaned, as a shell's job)."""

    def __init__(
        self, cluster: LocalCluster, argv: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.proc = cluster.popen(
            1,
            argv,
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            env=env,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._rest = b""


def started_away(
    cluster: LocalCluster,
    faulty: str,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> tuple[Child, int]:
    """faulty with -rnode2, past its first step on node 2; and its copy's pid."""
    argv = ["mosrun", "-rnode2", *options, faulty, "0", str(STEPS), str(STATUS)]
    prog = Child(cluster, argv, env)
    assert prog.line() == f"ready {prog.pid}"
    copy = copy_pid(cluster, 2, prog.pid)
    prog.go()
    assert prog.line() == "step 1"
    return prog, copy


def stop_seen(pid: int) -> int:
    """The signal that stopped child ``pid``, as the parent's waitpid(WUNTRACED) says."""
    seen: list[int] = []

    def stopped() -> bool:
        got, status = os.waitpid(pid, os.WUNTRACED | os.WNOHANG)
        if got == pid:
            assert os.WIFSTOPPED(status), f"process {pid} ended: status {status:#x}"
            seen.append(os.WSTOPSIG(status))
        return bool(seen)

    wait_until(stopped, EVENT_TIMEOUT, what=f"the parent's wait sees process {pid} stop")
    return seen[0]


def state(pid: int) -> str:
    return proc_info.state_letter(pid) or "gone"


def continue_and_finish(prog: Child, copy: int) -> None:
    os.kill(prog.pid, signal.SIGCONT)
    wait_until(lambda: state(copy) != "T", EVENT_TIMEOUT, what="the copy continues")
    lines, stderr, status = prog.finish()
    assert (status, stderr) == (STATUS, "")
    assert lines[1:] == [f"step {n}" for n in range(1, STEPS + 1)] + ["memory intact"]


def test_sigtstp_stops_the_copy_and_the_parent_sees_it(cluster: LocalCluster, faulty: str) -> None:
    prog, copy = started_away(cluster, faulty)
    os.kill(prog.pid, signal.SIGTSTP)
    assert stop_seen(prog.pid) == signal.SIGTSTP
    wait_until(lambda: state(copy) == "T", EVENT_TIMEOUT, what="the copy on node 2 stops")
    assert state(prog.pid) == "T"
    continue_and_finish(prog, copy)


def test_chkstop_away_stops_with_sigstop(cluster: LocalCluster, faulty: str) -> None:
    prog, copy = started_away(cluster, faulty, ["-C/tmp/jc"])
    done = cluster.run(1, ["migrate", str(prog.pid), "chkstop"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert cluster.node_path(1, "/tmp/jc.1").exists()
    assert stop_seen(prog.pid) == signal.SIGSTOP
    assert state(copy) == "T"
    continue_and_finish(prog, copy)


def test_sigint_ends_it_with_sigint(cluster: LocalCluster, faulty: str) -> None:
    prog, copy = started_away(cluster, faulty)
    os.kill(prog.pid, signal.SIGINT)
    _, stderr, status = prog.finish()
    assert (status, stderr) == (-signal.SIGINT, "")
    wait_until(lambda: state(copy) == "gone", EVENT_TIMEOUT, what="the copy ends")


def test_freeze_away_comes_home_frozen_then_continues(cluster: LocalCluster, faulty: str) -> None:
    space = cluster.node_path(1, "/tmp/jcfreeze")
    space.mkdir()
    prog, copy = started_away(cluster, faulty, env=dict(os.environ, FREEZE_DIR="/tmp/jcfreeze"))
    done = migrate(cluster, prog.pid, "freeze")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert state(copy) == "gone"  # nothing of it on node 2
    (image,) = space.glob(f"freeze.{prog.pid}.*")
    assert mosps_fields(cluster, prog.pid)[3:5] == ["home", "frozen"]
    done = migrate(cluster, prog.pid, "continue")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert not image.exists()
    lines, stderr, status = prog.finish()
    assert (status, stderr) == (STATUS, "")
    assert lines[1:] == [f"step {n}" for n in range(1, STEPS + 1)] + ["memory intact"]


def mosps_fields(cluster: LocalCluster, pid: int) -> list[str]:
    listing = cluster.run(1, ["mosps"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert listing.returncode == 0, listing.stderr
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == str(pid):
            return fields
    raise AssertionError(f"process {pid} not in mosps:\n{listing.stdout}")


def test_moskillall_stop_stops_it_with_sigtstp(cluster: LocalCluster, faulty: str) -> None:
    prog, copy = started_away(cluster, faulty, ["-J9"])
    done = cluster.run(
        1,
        ["moskillall", "-s", "STOP", "-J", "9"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert stop_seen(prog.pid) == signal.SIGTSTP  # SIGSTOP is sent as SIGTSTP (the manual)
    wait_until(lambda: state(copy) == "T", EVENT_TIMEOUT, what="the copy on node 2 stops")
    continue_and_finish(prog, copy)


JOBSHELL = Path(__file__).parent / "cprogs" / "jobshell.py"


class Terminal:
    """A job on a pseudo-terminal of node 1, run by cprogs/jobshell.py (a shell's job
    control: "stopped SIG" then fg; "status N"): what a user types reaches it as
    bytes on the master."""

    def __init__(self, cluster: LocalCluster, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        self.proc = cluster.popen(
            1,
            ["setsid", "-c", sys.executable, str(JOBSHELL), *argv],
            cwd="/tmp",
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.text = b""

    def until(self, wanted: bytes) -> None:
        def seen() -> bool:
            while select.select([self.master], [], [], 0)[0]:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the job shell ended: the terminal hung up
                    break
                if not chunk:
                    break
                self.text += chunk
            return wanted in self.text

        wait_until(seen, EVENT_TIMEOUT, what=f"{wanted!r} on the terminal: {self.text!r}")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.proc.wait(EVENT_TIMEOUT)
        os.close(self.master)


def on_terminal(cluster: LocalCluster, faulty: str) -> Terminal:
    term = Terminal(cluster, ["mosrun", "-rnode2", faulty, "0", str(STEPS), str(STATUS)])
    term.until(b"ready ")
    term.type(b"go\n")
    term.until(b"step 1\r\n")
    return term


def test_ctrl_z_at_the_terminal_stops_it_and_fg_continues(
    cluster: LocalCluster, faulty: str
) -> None:
    term = on_terminal(cluster, faulty)
    term.type(b"\x1a")  # ^Z
    term.until(b"stopped %d" % signal.SIGTSTP)  # the shell's wait saw its job stop
    term.until(b"status %d" % STATUS)  # fg: it continued where it was, to its end
    term.close()
    lines = term.text.decode().splitlines()
    assert [line for line in lines if line.startswith("step ")] == [
        f"step {n}" for n in range(1, STEPS + 1)
    ]
    assert "memory intact" in lines


def test_ctrl_c_at_the_terminal_ends_it(cluster: LocalCluster, faulty: str) -> None:
    term = on_terminal(cluster, faulty)
    term.type(b"\x03")  # ^C
    term.until(b"status %d" % -signal.SIGINT)
    term.close()
