"""Freezing at home: ``migrate PID freeze`` and ``migrate PID continue``, with a real agent.

A frozen process's image is in a file of its freezing space (FREEZE_DIR, else
~/.freeze_dirs, else the node's); the process holds no memory of the program
(it is the deputy, which keeps its pid, parent and descriptors) and continues
where it was, same pid, same parent, same open files.  The program
(cprogs/faulty.c) fills some memory with a pattern, prints "ready PID", waits
for a line, then prints "step N" after each stretch of computing and checks the
memory at the end.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent
from support.cbuild import build_c
from support.users import users_fixture
from support.waiting import wait_until

from mosix.native import native_path
from mosix.native_names import Program

CPROGS = Path(__file__).resolve().parent / "cprogs"
MB, STEPS, STATUS = 64, 150, 7


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("freeze")
    d.chmod(0o755)
    build_c(CPROGS / "faulty.c", d / "faulty", "-O0")
    return str(d / "faulty")


@pytest.fixture
def fagent(agent_base: Path) -> Iterator[Agent]:
    a = make_agent(agent_base)
    with open(a.config, "a") as f:
        f.write(f"[paths]\nfreeze_dir = {str(agent_base / 'node-freeze')!r}\n".replace("'", '"'))
    a.start()
    yield a
    cleanup(a)


def started(
    agent: Agent,
    faulty: str,
    freeze_dir: Path | None,
    *options: str,
    first_step: bool = True,
    steps: int = STEPS,
) -> subprocess.Popen[str]:
    """Started and past "ready" (and its first step, with ``first_step``); without
    ``first_step``, told "go" at once and nothing read: it may be frozen at any point."""
    env = dict(agent.env)
    if freeze_dir is not None:
        env["FREEZE_DIR"] = str(freeze_dir)
    p = subprocess.Popen(
        ["mosrun", *options, faulty, str(MB), str(steps), str(STATUS)],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    agent.started.append(p)
    assert p.stdout is not None and p.stdin is not None
    if not first_step:
        p.stdin.write("go\n")  # read when its memory is filled
        p.stdin.flush()
        return p
    assert p.stdout.readline() == f"ready {p.pid}\n"
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline() == "step 1\n"
    return p


def migrate(agent: Agent, pid: int, verb: str) -> subprocess.CompletedProcess[str]:
    return agent.run("migrate", str(pid), verb)


def mosps_row(agent: Agent, pid: int) -> list[str]:
    listing = agent.run("mosps")
    assert listing.returncode == 0, listing.stderr
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == str(pid):
            return fields
    raise AssertionError(f"process {pid} not in mosps:\n{listing.stdout}")


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def images(directory: Path, pid: int) -> list[Path]:
    return sorted(directory.glob(f"freeze.{pid}.*"))


def finish(p: subprocess.Popen[str]) -> tuple[list[str], str, int]:
    out, err = p.communicate(timeout=120)
    return out.splitlines(), err, p.returncode


def test_freeze_then_continue_same_process(fagent: Agent, faulty: str, agent_base: Path) -> None:
    space = agent_base / "space"
    space.mkdir()
    p = started(fagent, faulty, space, "-D2m")
    assert rss_kib(p.pid) > MB * 1024
    assert mosps_row(fagent, p.pid)[4:6] == ["running", "2m"]
    done = migrate(fagent, p.pid, "freeze")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    (image,) = images(space, p.pid)
    assert image.stat().st_size > MB * 1024 * 1024  # the program's memory is there
    # the pid, its parent and its descriptors stay; the program's memory does not
    assert os.readlink(f"/proc/{p.pid}/exe") == native_path(Program.DEPUTY)
    assert parent(p.pid) == os.getpid()
    assert rss_kib(p.pid) < 4096
    row = mosps_row(fagent, p.pid)
    assert row[4:6] == ["frozen", "3m"]  # frozen time is added to -D
    again = migrate(fagent, p.pid, "freeze")
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "already frozen" in again.stderr
    for verb in ("checkpoint", "out"):  # nothing is made of it while it is frozen
        refused = migrate(fagent, p.pid, verb)
        assert refused.returncode == 1 and "is frozen" in refused.stderr, refused.stderr
    done = migrate(fagent, p.pid, "continue")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert images(space, p.pid) == []
    lines, err, status = finish(p)
    assert (status, err) == (STATUS, "")
    assert lines == [f"step {n}" for n in range(2, STEPS + 1)] + ["memory intact"]


def mosq_rows(agent: Agent) -> list[list[str]]:
    listing = agent.run("mosq", "list")
    assert listing.returncode == 0, listing.stderr
    return [line.split() for line in listing.stdout.splitlines()[1:]]


def test_mosq_lists_a_frozen_process_and_run_continues_it(
    fagent: Agent, faulty: str, agent_base: Path
) -> None:
    """mosq shows frozen processes with their state; 'mosq run' continues one, its
    other actions say in one line that a frozen process is not queued."""
    p = started(fagent, faulty, agent_base / "node-freeze", "-J4")
    assert [row[1] for row in mosq_rows(fagent)] == []  # running: not mosq's
    assert migrate(fagent, p.pid, "freeze").returncode == 0
    (row,) = mosq_rows(fagent)
    assert row[:9] == ["-", str(p.pid), row[2], "4", "-", "-", "-", "1", "frozen"], row
    assert row[9:] == [faulty, str(MB), str(STEPS), str(STATUS)]
    (entry,) = json.loads(fagent.run("mosq", "list", "--json").stdout)
    assert (entry["pid"], entry["state"], entry["position"]) == (p.pid, "frozen", 0)
    for verb in ("abort", "advance", "retard"):
        refused = fagent.run("mosq", verb, str(p.pid))
        assert refused.returncode == 125 and refused.stderr.count("\n") == 1, refused.stderr
        assert "is frozen, not queued" in refused.stderr
    assert fagent.run("mosq", "count").stdout == "0\n"  # queued jobs only
    done = fagent.run("mosq", "run", "-j", "4")
    assert done.returncode == 0, done.stderr
    assert mosq_rows(fagent) == [] and mosps_row(fagent, p.pid)[4] == "running"
    lines, err, status = finish(p)
    assert (status, err) == (STATUS, "")
    assert lines == [f"step {n}" for n in range(2, STEPS + 1)] + ["memory intact"]


def test_continue_of_a_running_process_is_refused(fagent: Agent, faulty: str) -> None:
    p = started(fagent, faulty, None)
    done = migrate(fagent, p.pid, "continue")
    assert done.returncode == 1
    assert done.stderr == f"migrate: {p.pid}: process {p.pid} is not frozen\n"
    p.kill()
    p.wait()


def test_node_freezing_space_by_default(fagent: Agent, faulty: str, agent_base: Path) -> None:
    p = started(fagent, faulty, None)
    assert migrate(fagent, p.pid, "freeze").returncode == 0
    node_space = agent_base / "node-freeze"
    (image,) = images(node_space, p.pid)
    p.kill()  # a frozen process that is killed: its image goes with it
    p.wait()
    wait_until(lambda: not image.exists(), 30, what="the killed frozen process's image removed")


def test_unwritable_freezing_space_refused_and_runs_on(
    fagent: Agent, faulty: str, agent_base: Path
) -> None:
    p = started(fagent, faulty, agent_base / "no-such-dir")
    done = migrate(fagent, p.pid, "freeze")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "not frozen" in done.stderr and "no-such-dir" in done.stderr
    assert mosps_row(fagent, p.pid)[4] == "running"
    lines, err, status = finish(p)
    assert (status, err) == (STATUS, "")
    assert lines[-1] == "memory intact"


def test_signal_to_a_frozen_process_is_delivered_when_it_continues(
    fagent: Agent, faulty: str, agent_base: Path
) -> None:
    p = started(fagent, faulty, None)
    assert migrate(fagent, p.pid, "freeze").returncode == 0
    os.kill(p.pid, signal.SIGTERM)  # held by the frozen process (its deputy)
    done = migrate(fagent, p.pid, "continue")
    assert done.returncode == 0, done.stderr
    _, err, status = finish(p)
    assert (status, err) == (-signal.SIGTERM, "")


# ---------------------------------------------------------------- as a user, hostile too

freeze_users = users_fixture(("mosixfreeze1", "mosixfreeze2"))


@pytest.fixture
def user_faulty(agent_base: Path) -> str:
    """faulty where the test users can run it."""
    exe = agent_base / "bin" / "faulty"
    exe.parent.mkdir(mode=0o755)
    build_c(CPROGS / "faulty.c", exe, "-O0")
    return str(exe)


@pytest.fixture
def user_home(freeze_users: tuple[str, str]) -> Iterator[Path]:
    """The first test user's home directory (theirs; removed afterwards)."""
    entry = pwd.getpwnam(freeze_users[0])
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o755)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def users_dir(path: Path, user: str) -> Path:
    entry = pwd.getpwnam(user)
    path.mkdir(mode=0o755)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def started_as(
    agent: Agent, user: str, faulty: str, freeze_dir: str | None
) -> subprocess.Popen[str]:
    words = ["env", f"FREEZE_DIR={freeze_dir}"] if freeze_dir is not None else []
    argv = [*words, "mosrun", faulty, str(MB), str(STEPS), str(STATUS)]
    p = agent.spawn(
        *argv,
        user=user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline() == f"ready {p.pid}\n"
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline() == "step 1\n"
    return p


def test_users_freeze_dirs_file(
    fagent: Agent,
    user_faulty: str,
    user_home: Path,
    freeze_users: tuple[str, str],
    agent_base: Path,
) -> None:
    alice = freeze_users[0]
    first, second = agent_base / "first", users_dir(agent_base / "second", alice)
    listed = user_home / ".freeze_dirs"
    listed.write_text(f"not a directory\n{first}\n{second}\n")
    os.chown(listed, pwd.getpwnam(alice).pw_uid, -1)
    p = started_as(fagent, alice, user_faulty, None)
    done = fagent.run("migrate", str(p.pid), "freeze", user=alice)
    assert done.returncode == 0, done.stderr
    assert not first.exists()  # not there (it does not exist): the next line's
    (image,) = images(second, p.pid)
    assert image.stat().st_uid == pwd.getpwnam(alice).pw_uid
    assert fagent.run("migrate", str(p.pid), "continue", user=alice).returncode == 0
    lines, err, status = finish(p)
    assert (status, err, lines[-1]) == (STATUS, "", "memory intact")


def test_freeze_dirs_link_is_not_followed(
    fagent: Agent,
    user_faulty: str,
    user_home: Path,
    freeze_users: tuple[str, str],
    agent_base: Path,
) -> None:
    """~/.freeze_dirs as a link to a file the user may not read: not read as root."""
    alice = freeze_users[0]
    secret = agent_base / "secret"
    target = users_dir(agent_base / "from-secret", alice)
    secret.write_text(f"{target}\n")
    secret.chmod(0o600)
    (user_home / ".freeze_dirs").symlink_to(secret)
    p = started_as(fagent, alice, user_faulty, None)
    done = fagent.run("migrate", str(p.pid), "freeze", user=alice)
    assert images(target, p.pid) == []
    # the node's freezing space instead (made 1777 by the agent, as /tmp)
    assert done.returncode == 0, done.stderr
    assert len(images(agent_base / "node-freeze", p.pid)) == 1
    p.kill()
    p.wait()


def test_freeze_dir_the_user_cannot_write(
    fagent: Agent, user_faulty: str, freeze_users: tuple[str, str]
) -> None:
    """FREEZE_DIR=/etc: the image is written with the user's ids, so nothing is made there."""
    alice = freeze_users[0]
    p = started_as(fagent, alice, user_faulty, "/etc")
    done = fagent.run("migrate", str(p.pid), "freeze", user=alice)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "not frozen: /etc:" in done.stderr and "ermission denied" in done.stderr
    assert images(Path("/etc"), p.pid) == []
    assert fagent.run("mosps").stdout.count(" running ") >= 1
    lines, err, status = finish(p)
    assert (status, err, lines[-1]) == (STATUS, "", "memory intact")


def test_image_replaced_by_a_link_is_not_read(
    fagent: Agent, user_faulty: str, freeze_users: tuple[str, str], agent_base: Path
) -> None:
    """The user swaps the frozen image for a link to a file only root may read: continue
    refuses in one line and hands nothing over; the process stays frozen."""
    alice = freeze_users[0]
    space = users_dir(agent_base / "space", alice)
    p = started_as(fagent, alice, user_faulty, str(space))
    assert fagent.run("migrate", str(p.pid), "freeze", user=alice).returncode == 0
    (image,) = images(space, p.pid)
    image.unlink()
    image.symlink_to("/etc/shadow")
    done = fagent.run("migrate", str(p.pid), "continue", user=alice)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "its image" in done.stderr
    assert mosps_row(fagent, p.pid)[4] == "frozen"
    other = fagent.run("migrate", str(p.pid), "continue", user=freeze_users[1])
    assert other.returncode == 1
    p.kill()
    p.wait()


def test_relative_freeze_dir_refused(fagent: Agent, faulty: str) -> None:
    p = started(fagent, faulty, Path("relative"))
    done = migrate(fagent, p.pid, "freeze")
    assert (done.returncode, done.stderr) == (
        1,
        f"migrate: {p.pid}: process {p.pid} not frozen: FREEZE_DIR must start with '/'\n",
    )
    checkpoint = migrate(fagent, p.pid, "checkpoint")  # not frozen: it runs as before
    assert "frozen" not in checkpoint.stderr
    p.kill()
    p.wait()


def test_frozen_process_outlives_an_agent_restart(
    fagent: Agent, faulty: str, agent_base: Path
) -> None:
    space = agent_base / "space"
    space.mkdir()
    p = started(fagent, faulty, space)
    assert migrate(fagent, p.pid, "freeze").returncode == 0
    fagent.stop()
    assert p.poll() is None  # its deputy waits for an agent, holding its pid
    fagent.start()
    assert mosps_row(fagent, p.pid)[4] == "frozen"
    done = migrate(fagent, p.pid, "continue")
    assert done.returncode == 0, done.stderr
    assert images(space, p.pid) == []
    lines, err, status = finish(p)
    assert (status, err) == (STATUS, "")
    assert lines == [f"step {n}" for n in range(2, STEPS + 1)] + ["memory intact"]


@pytest.fixture
def auto_agent(agent_base: Path) -> Iterator[Agent]:
    """An agent whose policy freezes processes beyond 2 running (looking every 0.2 s)."""
    a = make_agent(agent_base)
    with open(a.config, "a") as f:
        f.write("[freeze]\nmax_running = 2\ninterval = 0.2\n")
    a.start()
    yield a
    cleanup(a)


def test_automatic_freezing_beyond_max_running(
    auto_agent: Agent, faulty: str, agent_base: Path
) -> None:
    space = agent_base / "space"
    space.mkdir()
    # the first two run without end (a loaded node can take longer to freeze the third
    # than they would take to finish STEPS, and ended ones no longer count as running)
    first, second = (started(auto_agent, faulty, space, steps=0) for _ in range(2))
    assert {mosps_row(auto_agent, p.pid)[4] for p in (first, second)} == {"running"}
    # the newest: frozen, perhaps while it fills its memory, before it says "ready"
    third = started(auto_agent, faulty, space, first_step=False)

    def state_of(p: subprocess.Popen[str]) -> str:
        return mosps_row(auto_agent, p.pid)[4]

    wait_until(lambda: state_of(third) == "frozen", 30, what="the third process frozen")
    assert len(images(space, third.pid)) == 1
    assert [state_of(first), state_of(second)] == ["running", "running"]
    first.kill()  # now fewer than 2 run: the frozen one continues
    first.wait()
    wait_until(lambda: state_of(third) == "running", 30, what="the third process continued")
    assert images(space, third.pid) == []
    lines, err, status = finish(third)
    assert (status, err) == (STATUS, "")
    steps = [f"step {n}" for n in range(1, STEPS + 1)]
    assert lines == [f"ready {third.pid}", *steps, "memory intact"]
    second.kill()
    second.wait()
