"""The root agent is not a way in: what an ordinary user may make it (and its
checkpointer) do.  Each test is an attack by a user the test creates, against a
real root agent, with real set-id programs, real disciplined processes and
root-only files; each is refused in one line and the agent keeps serving."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from support.agents import Agent, as_user, cleanup, make_agent
from support.cbuild import build_c
from support.users import private_dirs_on_the_way
from support.waiting import wait_until

from mosix.native import NATIVE_DIR

SECRET = "root-only-secret-line 4b1d"
TIMEOUT = 60

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the agent, set-id files)")


ATTACKER = "mosixrootcap"  # not test_agent's users: other modules may make and remove those


@pytest.fixture(scope="module")
def attacker() -> Iterator[str]:
    """An ordinary user; the Python and tools it runs are reachable for it."""
    opened = []
    for tool in (sys.executable, shutil.which("mosrun") or sys.executable):
        for d in private_dirs_on_the_way(Path(tool)):
            opened.append((d, d.stat().st_mode))
            d.chmod(d.stat().st_mode | 0o001)
    made = subprocess.run(["id", ATTACKER], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", ATTACKER], check=True)
    try:
        yield ATTACKER
    finally:
        if made:
            subprocess.run(["userdel", ATTACKER], check=False)
        for d, mode in reversed(opened):
            d.chmod(mode & 0o7777)


@pytest.fixture
def public_dir(agent_base: Path) -> Path:
    """A directory every user can reach (pytest's are root's own)."""
    return agent_base


@pytest.fixture
def root_only(public_dir: Path) -> Path:
    """A directory only root may write or read, holding a secret file."""
    d = public_dir / "root-only"
    d.mkdir(mode=0o700)
    (d / "secret").write_text(SECRET + "\nsecond line\n")
    (d / "secret").chmod(0o600)
    return d


def user_request(a: Agent, user: str, code: str) -> subprocess.CompletedProcess[str]:
    """Python run as ``user`` against the agent: ``client`` is a connection to it."""
    prelude = (
        "import sys\n"
        "from mosix.agent_client import connect\n"
        "from mosix.protocol import *\n"
        "client = connect(autostart=False)\n"
    )
    return a.run(sys.executable, "-c", prelude + code, user=user)


def served(a: Agent, user: str) -> bool:
    return a.run("mosps", user=user).returncode == 0


# ------------------------------------------------------------------ row 1


SETUID_SOURCE = r"""
#include <unistd.h>
int main(void)
{
    if (write(1, "ready\n", 6) != 6)
        return 1;
    pause();
    return 0;
}
"""


@pytest.fixture
def setuid_program(public_dir: Path) -> Path:
    """A tiny set-user-ID-root program (like su waiting for a password)."""
    exe = build_c(SETUID_SOURCE, public_dir / "setuid-prog", "-O2")
    os.chown(exe, 0, 0)
    exe.chmod(0o4755)
    return exe


def test_forged_mosix_inherit_on_a_set_id_program_is_no_mosix_process(
    agent: Agent,
    attacker: str,
    setuid_program: Path,
    root_only: Path,
) -> None:
    alice = attacker
    forged = [
        "env",
        "MOSIX_INHERIT=-e",
        f"MOSIX_AGENT_SOCKET={agent.run_dir / 'mosixd.sock'}",
        str(setuid_program),
    ]
    prog = agent.spawn(*forged, user=alice, stdout=subprocess.PIPE)
    assert prog.stdout is not None and prog.stdout.readline() == "ready\n"
    pid = prog.pid
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{_uid(alice)}\t0\t0\t0" in status  # really set-id
    target = root_only / "ckpt.1"
    r = user_request(
        agent,
        alice,
        f"print(client.request(CheckpointSettings(pid={pid}, file={bytes(target)!r}), Done))",
    )
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].endswith(f"process {pid} does not run under mosrun")
    r = agent.run("migrate", str(pid), "checkpoint", user=alice)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0
    assert "does not run under mosrun" in r.stderr
    assert sorted(p.name for p in root_only.iterdir()) == ["secret"]
    assert str(pid) not in agent.run("mosps", "-a").stdout.split()
    # the checkpointer itself, as the agent would run it: denied before any file exists
    r2 = subprocess.run(
        [str(NATIVE_DIR / "mosix-ckpt"), "-o", str(target), str(pid)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert r2.returncode == 5, r2.stderr
    assert r2.stderr == (
        f"mosix-ckpt: process {pid} may not be checkpointed: "
        "it runs with set-user-ID or set-group-ID privileges\n"
    )
    assert sorted(p.name for p in root_only.iterdir()) == ["secret"]
    assert prog.poll() is None and served(agent, alice)


def test_root_captures_another_users_undisciplined_process_nowhere(
    attacker: str,
    public_dir: Path,
) -> None:
    """Not set-id, but not under the discipline either: root will not act for it."""
    alice = attacker
    prog = subprocess.Popen(
        as_user(alice, ("sh", "-c", "echo ready; exec sleep 600")), stdout=subprocess.PIPE
    )
    try:
        assert prog.stdout is not None and prog.stdout.readline() == b"ready\n"
        mine = public_dir / "theirs"
        mine.mkdir()
        shutil.chown(mine, alice, alice)
        r = subprocess.run(
            [str(NATIVE_DIR / "mosix-ckpt"), "-o", str(mine / "ck"), str(prog.pid)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert r.returncode == 5
        assert r.stderr.endswith("it does not run under the MOSIX discipline\n")
        assert list(mine.iterdir()) == []
    finally:
        prog.kill()
        prog.wait()


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


# ------------------------------------------------------------------ row 2


WATCH_AND_SWAP = r"""
import os, sys
path, secret = sys.argv[1], sys.argv[2]
link = path + ".link"
os.symlink(secret, link)
print("watching", flush=True)
while not os.path.lexists(path):
    pass
os.replace(link, path)
print("swapped", flush=True)
"""


def test_refusal_reason_is_never_read_back_through_the_users_path(
    agent: Agent,
    attacker: str,
    public_dir: Path,
    root_only: Path,
) -> None:
    alice = attacker
    home = public_dir / "alice"
    home.mkdir()
    shutil.chown(home, alice, alice)
    ckpt = home / "ck"
    holder = "import socket, time; s = socket.socket(); print('ready', flush=True); time.sleep(600)"
    prog = agent.spawn(
        "mosrun", "-e", f"-C{ckpt}", sys.executable, "-c", holder,
        user=alice, stdout=subprocess.PIPE, cwd=home,
    )  # fmt: skip
    assert prog.stdout is not None and prog.stdout.readline() == "ready\n"
    # the user swaps the refusal file for a link to a root-only file as soon as it appears
    watcher = agent.spawn(
        sys.executable, "-c", WATCH_AND_SWAP, f"{ckpt}.1", str(root_only / "secret"),
        user=alice, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert watcher.stdout is not None and watcher.stdout.readline() == "watching\n"
    r = agent.run("migrate", str(prog.pid), "checkpoint", user=alice)
    assert watcher.stdout.readline() == "swapped\n"
    watcher.wait(timeout=TIMEOUT)
    assert SECRET not in r.stderr + r.stdout
    assert r.returncode != 0
    assert r.stderr == (
        f"migrate: {prog.pid}: not checkpointed: mosrun: checkpoint of process {prog.pid} "
        f"failed: it has an open socket (descriptor 3) ({ckpt}.1)\n"
    )
    assert prog.poll() is None and served(agent, alice)


# ------------------------------------------------------------------ row 9

BIG = "import sys; b = bytearray(b'x') * (300 << 20); print('ready', flush=True); sys.stdin.read()"


def capturer_writing(a: Agent, directory: Path) -> int | None:
    """The agent's mosix-ckpt once it has written part of the image into ``directory``."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text() != "mosix-ckpt\n":
                continue
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd).startswith(f"{directory}/") and fd.stat().st_size > 1 << 20:
                    return int(entry.name)
        except OSError:
            continue
    return None


def big_program(a: Agent, user: str, home: Path) -> subprocess.Popen[str]:
    prog = a.spawn(
        "mosrun", "-e", f"-C{home / 'ck'}", sys.executable, "-c", BIG,
        user=user, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=home,
    )  # fmt: skip
    assert prog.stdout is not None and prog.stdout.readline() == "ready\n"
    return prog


def users_dir(public_dir: Path, user: str) -> Path:
    home = public_dir / user
    home.mkdir()
    shutil.chown(home, user, user)
    return home


class Capturing(NamedTuple):
    home: Path  # the user's directory, where the checkpoints go
    prog: subprocess.Popen[str]  # the user's big program
    request: subprocess.Popen[str]  # its ``migrate PID checkpoint``
    capturer: int  # the capturer's pid, while it writes


def capturing(a: Agent, user: str, public_dir: Path, stderr: int) -> Capturing:
    """A big program of ``user``'s asked for a checkpoint, once its capturer writes it."""
    home = users_dir(public_dir, user)
    prog = big_program(a, user, home)
    request = a.spawn("migrate", str(prog.pid), "checkpoint", user=user, stderr=stderr)
    found: list[int] = []
    wait_until(lambda: bool(found.append(capturer_writing(a, home) or 0) or found[-1]))
    return Capturing(home, prog, request, found[-1])


def checkpoint_again(a: Agent, prog: subprocess.Popen[str], user: str) -> str:
    """``migrate PID checkpoint`` as ``user``, which succeeds; its stdout."""
    r = a.run("migrate", str(prog.pid), "checkpoint", user=user)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_capturer_killed_while_writing_leaves_no_file_and_no_zombie(
    agent: Agent,
    attacker: str,
    public_dir: Path,
) -> None:
    home, prog, request, capturer = capturing(agent, attacker, public_dir, subprocess.PIPE)
    os.kill(capturer, 9)
    _, err = request.communicate(timeout=TIMEOUT)
    assert request.returncode != 0 and err.count("\n") == 1
    assert list(home.iterdir()) == []
    children = Path(f"/proc/{prog.pid}/task/{prog.pid}/children").read_text().split()
    assert children == []  # the copy the capturer left was reaped
    checkpoint_again(agent, prog, attacker)
    assert [p.name for p in home.iterdir()] == ["ck.1"]  # the failed one wrote nothing
    prog.kill()


def test_an_agent_killed_during_a_checkpoint_never_reuses_its_number(
    agent: Agent,
    attacker: str,
    public_dir: Path,
) -> None:
    home, prog, _, _ = capturing(agent, attacker, public_dir, subprocess.DEVNULL)
    agent.kill9()
    wait_until(lambda: (home / "ck.1").exists(), what="the orphaned capture to finish")
    first = (home / "ck.1").stat()
    agent.start()
    written = checkpoint_again(agent, prog, attacker)
    assert written == f"{prog.pid}: checkpoint 2 written to {home}/ck.2\n"
    assert (home / "ck.1").stat().st_ino == first.st_ino
    prog.kill()


# ------------------------------------------------------------------ row 12


def test_a_private_root_agent_does_not_act_on_another_agents_processes(
    agent: Agent,
    attacker: str,
    public_dir: Path,
) -> None:
    (public_dir / "other-agent").mkdir()
    other = make_agent(public_dir / "other-agent")
    other.start()
    try:
        prog = agent.spawn(
            "mosrun", "-e", "sh", "-c", "echo ready; exec sleep 600",
            user=attacker, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert prog.stdout is not None
        first = prog.stdout.readline()
        assert first == "ready\n", prog.communicate()
        assert str(prog.pid) in agent.run("mosps", "-a").stdout.split()
        assert str(prog.pid) not in other.run("mosps", "-a").stdout.split()
        r = other.run("migrate", str(prog.pid), "checkpoint")
        assert r.returncode != 0
        assert r.stderr == f"migrate: {prog.pid}: process {prog.pid} does not run under mosrun\n"
    finally:
        cleanup(other)
