"""Programs moved in the middle of their calls behave exactly as they do natively.

Each program runs natively first, then under mosrun moved between the nodes of a
real test cluster in the middle of its run; the two runs must say the same.

- A parent waits for each of its two children by pid; the other child ends
  while it waits away from home.  The deputy's wait at home is interrupted by
  SIGCHLD; the program sees EINTR only where the kernel would have shown it
  (a handler without SA_RESTART), never without a handler or with SA_RESTART.
  Dynamic programs (the fast path) and static ones (the supervisor's path).
- A static program (every call on the supervisor's path) copies a home file in
  small reads and writes while a 1 ms interval timer fires, moved away and home
  many times: the copy's own SIGALRM interrupts its wait for a call that home
  executes; the call made again (SA_RESTART, or the program's EINTR loop) gets
  that call's result, and the file is exact (no write repeated, no read lost).
- The same static program's read of its home stdin, blocked at home while its
  timer fires: SIGTSTP to the home pid stops the copy (the deputy's read is
  interrupted, the copy's call restarted as the stop is taken), SIGCONT
  continues it, and moved on and home in the middle of that read it reads the
  next line once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import bring_up, migrate, node_programs, reads_stdin, where
from support.waiting import wait_until
from test_migration_faults import copy_pid

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

TIMEOUT = 120.0
SYS_WAIT4 = "61"


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes with the fast path on and no automatic balancing (it would bring the
    I/O-bound copy home on its own, in the middle of the test's moves)."""
    made = bring_up(3, cluster=ClusterSettings(balance_interval=0))
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="module")
def programs() -> Iterator[dict[str, str]]:
    builds = {
        "waiter": ["-O2", "waiter.c"],
        "waiter-static": ["-O2", "-static", "waiter.c"],
        "timer_copy-static": ["-O2", "-static", "timer_copy.c"],
        "timer_reader-static": ["-O2", "-static", "timer_reader.c"],
    }
    with node_programs("exact", builds) as directory:
        yield {name: str(directory / name) for name in builds}


def waiting_thread(pid: int) -> int | None:
    """The thread of process ``pid`` inside wait4 now (/proc/PID/task/TID/syscall's
    number), if any: at home the deputy's, which serves the copy's call (its main
    thread on the supervisor's path, a direct channel's server on the fast path)."""
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            if (task / "syscall").read_text().split()[:1] == [SYS_WAIT4]:
                return int(task.name)
        except OSError:
            continue  # a thread that just ended
    return None


def in_wait4(pid: int) -> bool:
    """Whether a thread of process ``pid`` is inside wait4 now."""
    try:
        return waiting_thread(pid) is not None
    except OSError:
        return False


def woken(pid: int, tid: int) -> int:
    """How often thread ``tid`` of ``pid`` has been woken from a sleep (voluntary switches)."""
    status = Path(f"/proc/{pid}/task/{tid}/status")
    for line in status.read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"{status}: no voluntary_ctxt_switches")


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def run_waiter(
    cluster: LocalCluster, argv: list[str], away: tuple[str, ...], home: tuple[str, ...]
) -> list[str]:
    """Run the waiter at node 1; move it through ``away`` (in order) before its second
    child ends, through ``home`` after; end the first child last.  Its output lines."""
    proc = cluster.popen(
        1, argv, cwd="/tmp", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        words = first.split()
        assert words[:1] == ["children"], (first, proc.communicate(timeout=TIMEOUT))
        children = [int(w) for w in words[1:]]

        def waiting() -> bool:
            assert proc.poll() is None, proc.communicate(timeout=TIMEOUT)
            return in_wait4(proc.pid)

        for target in away:
            done = migrate(cluster, proc.pid, target)
            assert done.returncode == 0, f"migrate {target}: {done.stderr}"
        wait_until(waiting, TIMEOUT, what="the wait for child 0", period=0.02)
        waiter = waiting_thread(proc.pid)
        assert waiter is not None
        before = woken(proc.pid, waiter)
        os.kill(children[1], signal.SIGTERM)
        wait_until(lambda: is_zombie(children[1]), TIMEOUT, what="child 1's end", period=0.02)
        if away:  # the deputy's wait was interrupted (SIGCHLD): it waits again, or says so

            def waits_again() -> bool:
                if proc.poll() is not None:
                    return True
                return woken(proc.pid, waiter) > before and waiting_thread(proc.pid) == waiter

            wait_until(
                waits_again,
                TIMEOUT,
                what="the deputy back in its wait",
                period=0.02,
            )
        for target in home:
            done = migrate(cluster, proc.pid, target)
            assert done.returncode == 0, f"migrate {target}: {done.stderr}"
        wait_until(waiting, TIMEOUT, what="the wait for child 0 again", period=0.02)
        os.kill(children[0], signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    return ["children", *rest.splitlines()]


@pytest.mark.parametrize("kind", ["waiter", "waiter-static"])
@pytest.mark.parametrize("mode", ["none", "restart", "interrupt"])
def test_a_wait_away_is_interrupted_only_where_the_kernel_would(
    cluster: LocalCluster,
    programs: dict[str, str],
    kind: str,
    mode: str,
) -> None:
    native = run_waiter(cluster, [programs[kind], mode], (), ())
    moved = run_waiter(cluster, ["mosrun", programs[kind], mode], ("node2",), ("node3", "home"))
    assert moved == native
    interrupted = ["wait 0: Interrupted system call"] if mode == "interrupt" else []
    handled = "0" if mode == "none" else "2"
    assert native == [
        "children",
        *interrupted,
        "waited 0 signal 15",
        "waited 1 signal 15",
        f"handled {handled}",
    ]


MOVES = ("node2", "home", "node3", "home") * 4


def file_size(cluster: LocalCluster, path: str) -> int:
    p = cluster.node_path(1, path)
    return p.stat().st_size if p.exists() else 0


@pytest.mark.parametrize("mode", ["restart", "interrupt"])
def test_calls_interrupted_by_the_copys_timer_are_done_once(
    cluster: LocalCluster,
    programs: dict[str, str],
    mode: str,
) -> None:
    source, out = f"/tmp/timer-copy-{mode}.in", f"/tmp/timer-copy-{mode}.out"
    data = random.Random(19).randbytes(40000)
    cluster.node_path(1, source).write_bytes(data)
    # no -r: a static program has no start gate, and the placement would move it 10 s
    # after its start (GATE_WAIT_SECONDS), in the middle of the moves made here
    argv = ["mosrun", programs["timer_copy-static"], mode, source, out]
    proc = cluster.popen(
        1, argv, cwd="/tmp", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for target in MOVES:
            seen = file_size(cluster, out)

            def copied_more(seen: int = seen) -> bool:  # it copies on where it is
                assert proc.poll() is None, proc.communicate()
                return file_size(cluster, out) > seen + 4096

            wait_until(copied_more, TIMEOUT, what=f"{out}: progress", period=0.01)
            done = migrate(cluster, proc.pid, target)
            assert done.returncode == 0, f"migrate {target}: {done.stderr}"
        stdout, stderr = proc.communicate(b"", timeout=TIMEOUT)  # stdin ends: it stops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    copied = cluster.node_path(1, out).read_bytes()
    assert stdout.split() == [b"copied", str(len(copied)).encode()]
    rounds = len(copied) // len(data) + 1
    expected = (data * rounds)[: len(copied)]
    if copied != expected:
        first = next(i for i in range(len(copied)) if copied[i] != expected[i])
        raise AssertionError(f"{out} differs from byte {first} of {len(copied)}")


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_read_blocked_at_home_stops_continues_and_moves(
    cluster: LocalCluster, programs: dict[str, str]
) -> None:
    proc = cluster.popen(
        1,
        ["mosrun", programs["timer_reader-static"]],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,  # a job of its own, not orphaned: SIGTSTP stops it
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == b"reading\n"
        done = migrate(cluster, proc.pid, "node2")
        assert done.returncode == 0, f"migrate node2: {done.stderr}"
        copy = copy_pid(cluster, 2, proc.pid)

        def blocked_at(place: str) -> bool:
            assert proc.poll() is None, proc.communicate()
            return where(cluster, proc.pid) == place and reads_stdin(proc.pid)

        wait_until(lambda: blocked_at("node2"), TIMEOUT, what="its read, served at home")
        os.kill(proc.pid, signal.SIGTSTP)
        stops: list[int] = []

        def stopped() -> bool:
            got, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
            if got == proc.pid:
                assert os.WIFSTOPPED(status), f"it ended: status {status:#x}"
                stops.append(os.WSTOPSIG(status))
            return bool(stops)

        wait_until(stopped, TIMEOUT, what="the parent's wait sees it stop")
        assert stops == [signal.SIGTSTP]
        wait_until(lambda: process_state(copy) == "T", TIMEOUT, what="the copy on node 2 stops")
        os.kill(proc.pid, signal.SIGCONT)
        wait_until(lambda: process_state(copy) != "T", TIMEOUT, what="the copy continues")
        wait_until(lambda: blocked_at("node2"), TIMEOUT, what="its read again")
        for target, place in (("node3", "node3"), ("home", "home")):
            done = migrate(cluster, proc.pid, target)  # in the middle of its read
            assert done.returncode == 0, f"migrate {target}: {done.stderr}"
            wait_until(lambda place=place: blocked_at(place), TIMEOUT, what=f"its read at {place}")
        stdout, stderr = proc.communicate(b"one\ntwo\n", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, stderr) == (0, b"")
    assert stdout == b"got one\ngot two\nlines 2 alarms yes\n"
