"""Checkpoint and recovery as a user sees them: mosrun -C -N -A -R -I -O, migrate's verbs.

Real agent, real mosrun, real programs (dynamic C, static C, python3).  The
workload (tests/cprogs/e2e_counter.*) writes a file of lines that depend on
all its memory, pauses once (blocked reading stdin), and is checkpointed
there; the recovered copy must finish the file byte for byte as an
uninterrupted run does.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent, start_blocker
from support.cbuild import build_c
from support.waiting import wait_until

from mosix.ckpt.image import read_head_from

REPO = Path(__file__).resolve().parents[1]
CPROGS = REPO / "tests" / "cprogs"
LINES, PAUSE_AT = 400, 150
MINUTE = 0.3  # seconds in an -A minute for these tests


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    d = tmp_path_factory.mktemp("e2e")
    d.chmod(0o755)
    src = CPROGS / "e2e_counter.c"
    flags = ["-O2", "-Wall", "-Wextra", "-Werror"]
    for name in ("dynamic", "static"):
        build_c(src, d / name, *flags, static=name == "static")
    return {
        "dynamic": [str(d / "dynamic")],
        "static": [str(d / "static")],
        "python": [sys.executable, "-P", str(CPROGS / "e2e_counter.py")],
    }


@pytest.fixture
def ckagent(agent_base: Path) -> Iterator[Agent]:
    a = make_agent(agent_base)
    with open(a.config, "a") as f:
        f.write(f"[checkpoint]\nminute_seconds = {MINUTE}\n")
    a.start()
    yield a
    cleanup(a)


@pytest.fixture
def work(agent_base: Path) -> Path:
    d = agent_base / "work"
    d.mkdir()
    return d


def start(agent: Agent, work: Path, argv: list[str], *options: str) -> subprocess.Popen[str]:
    p = agent.spawn(
        "mosrun", *options, *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work
    )
    assert p.stdout is not None
    assert p.stdout.readline() == "paused\n"
    return p


def finish(p: subprocess.Popen[str]) -> tuple[str, int]:
    out, _ = p.communicate("x", timeout=60)
    return out, p.returncode


def reference(agent: Agent, work: Path, argv: list[str]) -> bytes:
    ref = work / "ref.out"
    result = agent.run("mosrun", *argv, str(ref), str(LINES), str(PAUSE_AT), input="x", cwd=work)
    assert (result.returncode, result.stdout) == (3, "paused\ndone\n"), result.stderr
    return ref.read_bytes()


def migrate(agent: Agent, pid: int, verb: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return agent.run("migrate", str(pid), verb, cwd=cwd)


@pytest.mark.parametrize("kind", ["dynamic", "static", "python"])
def test_recovered_program_finishes_byte_identical(
    ckagent: Agent, work: Path, programs: dict[str, list[str]], kind: str
) -> None:
    argv = programs[kind]
    expected = reference(ckagent, work, argv)
    out = work / "run.out"
    p = start(ckagent, work, [*argv, str(out), str(LINES), str(PAUSE_AT)])
    result = migrate(ckagent, p.pid, "checkpoint", work)
    ckpt = work / f"ckpt.{p.pid}.1"
    assert result.stdout == f"{p.pid}: checkpoint 1 written to {ckpt}\n", result.stderr
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o400
    p.kill()
    p.wait()
    assert len(out.read_bytes()) < len(expected)  # it stopped half-way

    r = ckagent.spawn("mosrun", f"-R{ckpt}", stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/")
    stdout, code = finish(r)
    assert (stdout, code) == ("done\n", 3)
    assert out.read_bytes() == expected


def test_the_program_keeps_running_after_a_checkpoint(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    argv = programs["dynamic"]
    expected = reference(ckagent, work, argv)
    out = work / "run.out"
    p = start(ckagent, work, [*argv, str(out), str(LINES), str(PAUSE_AT)])
    assert migrate(ckagent, p.pid, "checkpoint", work).returncode == 0
    # the frozen copy was the program's child: it is gone, reaped
    assert Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split() == []
    assert finish(p) == ("done\n", 3)
    assert out.read_bytes() == expected


def test_an_unlinked_file_comes_back_with_its_contents(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    out = work / "run.out"
    p = start(ckagent, work, [*programs["dynamic"], str(out), "200", "100", "tmp"])
    assert migrate(ckagent, p.pid, "chkexit", work).returncode == 0
    assert p.wait(timeout=30) == -signal.SIGKILL
    r = ckagent.spawn(
        "mosrun",
        f"-R{work / f'ckpt.{p.pid}.1'}",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd="/",
    )
    assert finish(r) == ("kept across recovery\ndone\n", 3)
    assert sorted(os.listdir(work)) == [f"ckpt.{p.pid}.1", "run.out"]  # unlinked again


def test_names_follow_C_and_N_with_recycling(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    out = work / "run.out"
    p = start(ckagent, work, [*programs["dynamic"], str(out), "200", "100"], "-Csave.4", "-N3")
    written = []
    for _ in range(4):
        result = migrate(ckagent, p.pid, "checkpoint", work)
        assert result.returncode == 0, result.stderr
        written.append(result.stdout.split()[-1])
    assert written == [str(work / n) for n in ("save.4", "save.5", "save.6", "save.4")]
    times = {n: read_head_from(str(work / n)).created_ns for n in ("save.4", "save.5", "save.6")}
    assert times["save.4"] > times["save.6"] > times["save.5"]  # save.4 was rewritten last
    assert sorted(os.listdir(work)) == ["run.out", "save.4", "save.5", "save.6"]  # no temporaries
    assert finish(p) == ("done\n", 3)


def test_an_open_pipe_gives_a_counted_checkpoint_holding_the_reason(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    out = work / "run.out"
    p = start(ckagent, work, [*programs["dynamic"], str(out), "200", "100", "pipe"], "-Cp")
    result = migrate(ckagent, p.pid, "checkpoint", work)
    assert result.returncode == 1
    assert "pipe" in result.stderr and str(work / "p.1") in result.stderr
    failed = work / "p.1"
    text = failed.read_text()
    assert text.startswith("mosrun: ") and text.count("\n") == 1 and "pipe" in text
    assert stat.S_IMODE(failed.stat().st_mode) == 0o400
    inspect = ckagent.run("mosrun", f"-I{failed}")
    assert inspect.returncode == 125
    assert inspect.stderr.count("\n") == 1 and "failed when it was taken" in inspect.stderr
    assert finish(p) == ("done\n", 3)


def test_inspect_lists_the_open_files(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    out = work / "run.out"
    p = start(ckagent, work, [*programs["dynamic"], str(out), str(LINES), str(PAUSE_AT)])
    assert migrate(ckagent, p.pid, "checkpoint", work).returncode == 0
    ckpt = work / f"ckpt.{p.pid}.1"
    result = ckagent.run("mosrun", f"-I{ckpt}")
    assert result.returncode == 0, result.stderr
    rows = {int(line.split()[0]): line.split() for line in result.stdout.splitlines()[3:]}
    assert set(rows) == {0, 1, 2, 3}
    fd3 = rows[3]
    assert fd3[1] == "file" and fd3[3] == "O_WRONLY" and fd3[5] == str(out)
    assert int(fd3[4]) == out.stat().st_size  # the offset when it paused (flushed)
    assert rows[0][1] == rows[1][1] == "special", result.stdout  # the pipes to this test
    finish(p)


def test_reopen_sends_a_descriptor_to_another_file(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    argv = programs["dynamic"]
    expected = reference(ckagent, work, argv)
    out = work / "run.out"
    p = start(ckagent, work, [*argv, str(out), str(LINES), str(PAUSE_AT)])
    assert migrate(ckagent, p.pid, "chkexit", work).returncode == 0
    assert p.wait(timeout=30) == -signal.SIGKILL
    at = out.stat().st_size
    other = work / "other,with,commas.out"
    r = ckagent.spawn(
        "mosrun",
        f"-R{work / f'ckpt.{p.pid}.1'}",
        f"-O@3={other}",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=work,
    )
    assert finish(r) == ("done\n", 3)
    data = other.read_bytes()
    assert data[:at] == bytes(at)  # created, written from the old offset on
    assert data[at:] == expected[at:]
    assert out.read_bytes() == expected[:at]


def test_damaged_images_are_refused_in_one_line(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    out = work / "run.out"
    p = start(ckagent, work, [*programs["dynamic"], str(out), str(LINES), str(PAUSE_AT)])
    assert migrate(ckagent, p.pid, "chkstop", work).returncode == 0
    assert Path(f"/proc/{p.pid}/stat").read_text().split(") ")[1][0] == "T"
    good = (work / f"ckpt.{p.pid}.1").read_bytes()
    p.kill()
    p.wait()
    cases = {
        "flipped": bytearray(good),
        "truncated": bytearray(good[: len(good) * 2 // 3]),
        "head": bytearray(good[:100]),
    }
    cases["flipped"][len(good) // 2] ^= 0x40
    for name, data in cases.items():
        bad = work / f"{name}.img"
        bad.write_bytes(bytes(data))
        r = ckagent.run("mosrun", f"-R{bad}", input="x", cwd=work)
        assert r.returncode == 125, (name, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"mosrun: -R{bad}: "), r.stderr
        assert "done" not in r.stdout
    r = ckagent.run("mosrun", f"-I{work / 'head.img'}")
    assert (r.returncode, r.stderr.count("\n")) == (125, 1)
    assert "truncated" in r.stderr


def test_periodic_checkpoints_wait_while_the_program_is_blocked(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    out = work / "run.out"
    first = work / "auto.1"
    # blocked in read(2) from the start: no checkpoint while it waits
    p = start(ckagent, work, [*programs["dynamic"], str(out), "3000000", "1"], "-Cauto", "-A1")
    time.sleep(4 * MINUTE)  # the timer has fired meanwhile; an absence has no event to await
    assert not first.exists()
    assert p.stdin is not None
    p.stdin.write("x")
    p.stdin.flush()  # now it computes: the overdue checkpoint comes
    wait_until(first.exists, timeout=30, what="the periodic checkpoint")
    wait_until(lambda: (work / "auto.2").exists(), timeout=30, what="the second one")
    p.kill()
    p.wait()


def test_periodic_checkpoints_come_on_time_for_a_program_that_mostly_sleeps(
    ckagent: Agent, work: Path
) -> None:
    """-A: a program that sleeps half a second per loop still gets a checkpoint each
    minute (its sleeps end; it is never caught running by the agent's looks)."""
    loop = "import time\nwhile True:\n    time.sleep(0.5)\n"
    p = ckagent.spawn(
        "mosrun",
        "-Csleepy",
        "-A1",
        sys.executable,
        "-P",
        "-c",
        loop,
        cwd=work,
        stdin=subprocess.DEVNULL,
    )
    wait_until(lambda: (work / "sleepy.3").exists(), timeout=30, what="three periodic checkpoints")
    assert read_head_from(str(work / "sleepy.1")).pid == p.pid
    p.kill()
    p.wait()


def test_recovery_takes_the_location_options_q_J_and_D(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    """mosrun -R{file} -q -J7 -D1h: queued first, then listed with its new job and estimate."""
    argv = programs["dynamic"]
    expected = reference(ckagent, work, argv)
    out = work / "run.out"
    p = start(ckagent, work, [*argv, str(out), str(LINES), str(PAUSE_AT)], "-J3")
    assert migrate(ckagent, p.pid, "chkexit", work).returncode == 0
    assert p.wait(timeout=30) == -signal.SIGKILL
    blocker = start_blocker(ckagent)
    options = ["-q", "-J7", "-D1h"]
    r = ckagent.spawn(
        "mosrun",
        f"-R{work / f'ckpt.{p.pid}.1'}",
        *options,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd="/",
    )
    wait_until(lambda: ckagent.queued_count() == 1, what="the recovery to be queued")
    assert Path(f"/proc/{r.pid}/comm").read_text() == "mosqueue\n"
    assert blocker.stdin is not None
    blocker.stdin.close()
    assert blocker.wait(timeout=30) == 0

    def listed() -> list[str]:
        rows = ckagent.run("mosps").stdout.splitlines()[1:]
        return next((row.split() for row in rows if row.split()[0] == str(r.pid)), [])

    wait_until(lambda: listed()[4:5] == ["running"], what="the recovered process to run")
    assert listed()[1:6] == ["root", "7", "home", "running", "1h0m"]
    assert finish(r) == ("done\n", 3)
    assert out.read_bytes() == expected


def test_recovery_on_a_node_this_cluster_lacks_is_refused_in_one_line(
    ckagent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    """mosrun -R{file} -2 on a one-node cluster: refused before any -O file is made;
    with -F it recovers here."""
    out = work / "run.out"
    p = start(ckagent, work, [*programs["dynamic"], str(out), str(LINES), str(PAUSE_AT)])
    assert migrate(ckagent, p.pid, "chkexit", work).returncode == 0
    assert p.wait(timeout=30) == -signal.SIGKILL
    elsewhere = work / "elsewhere.out"
    result = ckagent.run("mosrun", f"-R{work / f'ckpt.{p.pid}.1'}", "-2", f"-O1={elsewhere}")
    assert result.returncode == 125
    assert result.stderr == (
        "mosrun: -2: no such node in this cluster (-F starts the program here instead)\n"
    )
    assert not elsewhere.exists()
    forced = ckagent.run(
        "mosrun", f"-R{work / f'ckpt.{p.pid}.1'}", "-2", "-F", f"-O1={elsewhere}", input="x"
    )
    assert forced.returncode == 3, forced.stderr  # -F: here instead
    assert elsewhere.read_text() == "done\n"
