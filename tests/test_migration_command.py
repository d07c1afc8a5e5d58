"""``migrate PID node|home|out`` on a running computation, in a real 3-node test cluster.

The program (tests/cprogs/stepper.c) computes in steps and prints a checksum per
step; the test moves it while it computes and waits for its next line after each
move, so every hop happens in the middle of the computation.  Its stdout and the
file it writes must be byte-identical to a native run of the same program, and
mosps must show where it runs at each stage.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from support.clusters import migrate, mosrun_at_home, moved, node_programs, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

TIMEOUT = 120


@pytest.fixture(scope="module")
def programs() -> Iterator[Path]:
    builds = {name: ["-O1", f"{name}.c"] for name in ("stepper", "locker", "forker", "cloexec")}
    with node_programs("migrate", builds) as directory:
        yield directory


def next_step(stdout: IO[str], seen: list[str]) -> int:
    """The number of the program's next step line (waits for it); the line joins ``seen``."""
    line = stdout.readline()
    assert line.startswith("step "), f"unexpected output: {line!r}"
    seen.append(line)
    return int(line.split()[1])


def home_log(cluster: LocalCluster) -> str:
    return cluster.agent_log(1).read_text()


def logs(cluster: LocalCluster) -> str:
    """The agents' logs without the cluster layer's chatter, for failure messages."""
    text = []
    for k in cluster.numbers:
        lines = cluster.agent_log(k).read_text().splitlines()
        text += [f"node {k}: {line}" for line in lines if " cluster: " not in line]
    return "\n".join(text)


def listed(cluster: LocalCluster, k: int) -> set[int]:
    """The pids mosps shows on node k."""
    listing = cluster.run(k, ["mosps"], capture_output=True, text=True, timeout=TIMEOUT)
    assert listing.returncode == 0, listing.stderr
    return {int(line.split()[0]) for line in listing.stdout.splitlines()[1:] if line[:1] == " "}


def copy_pid(cluster: LocalCluster, k: int, pid: int) -> int:
    """The pid of the last copy of node 1's process ``pid`` on node k (from k's log)."""
    found = re.findall(
        rf"process {pid} of node 1 \S+ \S+ runs here as (\d+)",
        "\n".join(cluster.agent_log(k).read_text().splitlines()),
    )
    assert found, logs(cluster)
    return int(found[-1])


def native_output(cluster: LocalCluster, stepper: Path, last: int) -> tuple[str, str]:
    """stdout and the file of a native run that stops after step ``last``."""
    run = cluster.run(
        1,
        [str(stepper), "native.out"],
        cwd="/tmp",
        input=f"{last}\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout, cluster.node_path(1, "/tmp/native.out").read_text()


def test_migrate_there_and_back_is_byte_identical(
    cluster3: LocalCluster,
    programs: Path,
) -> None:
    stepper = programs / "stepper"
    seen: list[str] = []
    with mosrun_at_home(cluster3, [str(stepper), "moved.out"], "/tmp") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        next_step(proc.stdout, seen)
        assert where(cluster3, proc.pid) == "home"
        hops = [("2", "node2"), ("home", "home"), ("out", None), ("home", "home")]
        for target, expected in hops:
            moved(cluster3, proc, target)
            step = next_step(proc.stdout, seen)  # it computes on after the move
            shown = where(cluster3, proc.pid)
            if expected is None:  # out: any node but home
                assert shown in ("node2", "node3"), f"{shown}\n{logs(cluster3)}"
            else:
                assert shown == expected, f"{shown}\n{logs(cluster3)}"
            if shown != "home":  # the copy is its home's to list, not the node's it runs on
                k = int(shown.removeprefix("node"))
                assert copy_pid(cluster3, k, proc.pid) not in listed(cluster3, k)
        last = step + 2
        proc.stdin.write(f"{last}\n")
        proc.stdin.close()
        rest = proc.stdout.read()  # not communicate(): it would skip what readline buffered
        proc.wait(timeout=TIMEOUT)
        stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    moved_stdout = "".join(seen) + rest
    steps = len(moved_stdout.splitlines())  # it stops after `last`, or at once if past it
    assert steps >= last
    native_stdout, native_file = native_output(cluster3, stepper, steps)
    assert len(native_stdout.splitlines()) == steps
    assert moved_stdout == native_stdout
    assert cluster3.node_path(1, "/tmp/moved.out").read_text() == native_file
    assert not cluster3.node_path(2, "/tmp/moved.out").exists()
    home_log = cluster3.agent_log(1).read_text()
    assert f"process {proc.pid} migrated to node 2" in home_log
    assert f"process {proc.pid} came home from node 2" in home_log


def test_a_process_that_cannot_move_stays_and_mosps_says_why(
    cluster3: LocalCluster,
    programs: Path,
) -> None:
    with mosrun_at_home(cluster3, [str(programs / "locker")]) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        refused = migrate(cluster3, proc.pid, "2")
        assert refused.returncode == 1
        assert refused.stderr == (
            f"migrate: {proc.pid}: process {proc.pid} cannot migrate: "
            "it has locked memory (mlock, MAP_LOCKED)\n"
        )
        assert where(cluster3, proc.pid) == "home"
        listing = cluster3.run(1, ["mosps", "-w"], capture_output=True, text=True, timeout=TIMEOUT)
        lines = listing.stdout.splitlines()
        mine = next(i for i, line in enumerate(lines) if line.split()[0] == str(proc.pid))
        assert lines[mine + 1].strip() == "why here: it has locked memory (mlock, MAP_LOCKED)"
        proc.stdin.close()  # it goes on where it is, and ends well
        assert proc.wait(timeout=TIMEOUT) == 0
    assert f"process {proc.pid} migrated" not in cluster3.agent_log(1).read_text()


def test_fork_vfork_and_exec_on_another_node_bring_it_home(
    cluster3: LocalCluster,
    programs: Path,
) -> None:
    with mosrun_at_home(cluster3, [str(programs / "forker")]) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        pid = proc.pid

        def order(command: str, node: str) -> None:
            moved(cluster3, proc, node)
            assert where(cluster3, pid) == f"node{node}"
            proc.stdin.write(command + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

        assert proc.stdout.readline() == f"ready pid {pid}\n"
        order("fork", "2")
        assert proc.stdout.readline() == f"child ppid {pid}\n"
        assert proc.stdout.readline() == "fork: child status 3\n"
        assert proc.stdout.readline() == f"done fork pid {pid}\n"
        assert where(cluster3, pid) == "home"
        order("vfork", "3")
        assert proc.stdout.readline() == "vfork: child status 4\n"
        assert proc.stdout.readline() == f"done vfork pid {pid}\n"
        assert where(cluster3, pid) == "home"
        order("exec", "2")
        assert proc.stdout.readline() == f"exec pid {pid}\n"
        assert proc.wait(timeout=TIMEOUT) == 6
    # the agent logs a home-coming once the restorer is done; the exec'd program may end first
    came_home = f"process {pid} came home from node"
    with contextlib.suppress(AssertionError):  # the count below says what is wrong
        wait_until(
            lambda: home_log(cluster3).count(came_home) >= 3, TIMEOUT, what="three home-comings"
        )
    assert home_log(cluster3).count(came_home) == 3, logs(cluster3)


def test_a_whole_job_moves_and_comes_back(cluster3: LocalCluster, programs: Path) -> None:
    with contextlib.ExitStack() as running:
        members = [
            running.enter_context(
                mosrun_at_home(cluster3, ["-J7", str(programs / "stepper"), f"job{i}.out"], "/tmp")
            )
            for i in range(2)
        ]
        for p in members:
            next_step(p.stdout, [])  # type: ignore[arg-type]
        for target, shown in (("3", "node3"), ("home", "home")):
            done = cluster3.run(
                1, ["migrate", "-j7", target], capture_output=True, text=True, timeout=TIMEOUT
            )
            assert done.returncode == 0, done.stderr
            assert [where(cluster3, p.pid) for p in members] == [shown, shown]
        for p in members:
            p.stdin.close()  # type: ignore[union-attr]
            assert p.wait(timeout=TIMEOUT) == 0
    log = cluster3.agent_log(1).read_text()
    for p in members:
        assert f"process {p.pid} migrated to node 3" in log
        assert f"process {p.pid} came home from node 3" in log


def test_close_on_exec_flags_survive_a_round_trip(cluster3: LocalCluster, programs: Path) -> None:
    """A descriptor opened with O_CLOEXEC at home and closed while away, and one opened
    with O_CLOEXEC while away: coming home keeps the second with its flag and does not
    trip over the first (it used to: the restorer set the flag on the closed one)."""
    argv = [str(programs / "cloexec"), "a.out", "b.out", "go"]
    with mosrun_at_home(cluster3, argv, "/tmp") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline() == "ready\n"
            moved(cluster3, proc, "2")
            proc.stdin.write("1\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "swapped\n"
            moved(cluster3, proc, "home")
            cluster3.node_path(1, "/tmp/go").write_text("")
            assert proc.stdout.readline() == "ok\n"
        finally:
            _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr + logs(cluster3)
    assert cluster3.node_path(1, "/tmp/b.out").read_text() == "B\n"
