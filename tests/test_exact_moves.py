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
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import bring_up, migrate, node_programs
from support.waiting import wait_until

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


NOTIF_RACE = (
    "known limit (issue 19 item 4): under load the supervisor's path can still do a "
    "call twice (CI runs: a write repeated, the file 35 bytes longer than the program "
    "counted; with SA_RESTART a read's data lost, the file differing at byte 6027153); "
    "the kernel drops a reply NOTIF_SEND accepted when the copy's timer signal woke its "
    "wait just before, and the call made again is done again at home"
)


def file_size(cluster: LocalCluster, path: str) -> int:
    p = cluster.node_path(1, path)
    return p.stat().st_size if p.exists() else 0


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(mode, marks=pytest.mark.xfail(strict=False, reason=NOTIF_RACE))
        for mode in ("restart", "interrupt")
    ],
)
def test_calls_interrupted_by_the_copys_timer_are_done_once(
    cluster: LocalCluster,
    programs: dict[str, str],
    mode: str,
) -> None:
    source, out = f"/tmp/timer-copy-{mode}.in", f"/tmp/timer-copy-{mode}.out"
    data = random.Random(19).randbytes(40000)
    cluster.node_path(1, source).write_bytes(data)
    argv = ["mosrun", "-rnode2", programs["timer_copy-static"], mode, source, out]
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
