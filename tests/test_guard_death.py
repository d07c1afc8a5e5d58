"""A guard that dies does not turn -u into -e: the node agent watches every guard
that announced itself (GuardHello) and, when one dies while its tree lives, kills
the tree's -u processes (before, an ordinary user killed its own guard and every
unsupported call under -u silently failed with ENOSYS).  -e keeps getting ENOSYS.
A forged announcement makes the agent watch nothing and harm no one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.agents import Agent, gone
from support.users import users_fixture
from support.waiting import wait_until

from mosix.sysinfo import proc_info

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make users")

users = users_fixture(("mosixguard1", "mosixguard2"))  # not other modules' users


@pytest.fixture
def attacker(users: tuple[str, str]) -> str:
    return users[0]


@pytest.fixture
def other(users: tuple[str, str]) -> str:
    return users[1]


# syslog(SYSLOG_ACTION_READ_ALL): unsupported, the base filter hands it to the guard
PROGRAM = r"""
import ctypes, errno, sys
print("ready", flush=True)
sys.stdin.readline()
r = ctypes.CDLL(None, use_errno=True).syscall(103, 3, 0, 0)
print("result", r, errno.errorcode.get(ctypes.get_errno()), flush=True)
"""

FORGER = r"""
import os, socket, sys
from mosix.protocol import GuardHello, HEADER, decode_message, encode_message

path, root, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
r, w = os.pipe()  # a descriptor in place of a listener
rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, sys.byteorder))]
if sys.argv[4:] == ["nofd"]:
    rights = []
s.sendmsg([encode_message(GuardHello(root=root, mode=mode))], rights)
head = s.recv(HEADER.size, socket.MSG_WAITALL)
body = s.recv(HEADER.unpack(head)[0], socket.MSG_WAITALL)
print(decode_message(body))
"""


def guard_of(pid: int, user: str) -> int:
    """The program's own guard: the first mosix-guard of ``user`` started since it."""
    uid = user_id(user)
    since = proc_info.start_ticks(pid)
    assert since is not None, "the program is gone"
    found = []
    for guard in proc_info.pids():
        try:
            comm = (Path("/proc") / str(guard) / "comm").read_text().strip()
        except OSError:
            continue
        started = proc_info.start_ticks(guard)
        ours = comm == "mosix-guard" and proc_info.real_uid(guard) == uid
        if ours and started is not None and started >= since:
            found.append((started, guard))
    assert found, "the program has no guard"
    return min(found)[1]


def start_program(agent: Agent, user: str, *options: str) -> subprocess.Popen[str]:
    proc = agent.spawn(
        "mosrun",
        *options,
        sys.executable,
        "-c",
        PROGRAM,
        user=user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def kill_guard_then_call(agent: Agent, user: str, proc: subprocess.Popen[str]) -> str:
    """The user kills the program's guard; then the program makes its call."""
    guard = guard_of(proc.pid, user)
    r = agent.run(sys.executable, "-c", f"import os; os.kill({guard}, 9)", user=user)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: gone(guard), what="the guard to die")
    assert proc.stdin is not None
    try:
        proc.stdin.write("go\n")
        proc.stdin.close()
    except BrokenPipeError:
        pass  # killed already
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.wait(timeout=30)
    return out


def test_a_killed_guard_still_kills_under_u(agent: Agent, attacker: str) -> None:
    proc = start_program(agent, attacker)
    out = kill_guard_then_call(agent, attacker, proc)
    assert proc.returncode == -9 and "result" not in out, out
    log = agent.run_dir.parent / "agent.stderr"
    wait_until(
        lambda: f"killed {proc.pid} " in log.read_text(), what="the agent to log what it did"
    )


def test_a_killed_guard_leaves_e_with_enosys(agent: Agent, attacker: str) -> None:
    proc = start_program(agent, attacker, "-e")
    out = kill_guard_then_call(agent, attacker, proc)
    assert proc.returncode == 0 and out == "result -1 ENOSYS\n", out


def test_an_inner_u_under_an_outer_e_is_killed_too(agent: Agent, attacker: str) -> None:
    """The mode is each process's own (its MOSIX_INHERIT), as the guard reads it."""
    outer = agent.spawn(
        "mosrun",
        "-e",
        "sh",
        "-c",
        f"mosrun -u {sys.executable} -c '{PROGRAM}'; echo inner $?",
        user=attacker,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert outer.stdout is not None and outer.stdout.readline() == "ready\n"
    out = kill_guard_then_call(agent, attacker, outer)
    assert outer.returncode == 0 and out == "inner 137\n", out


def user_id(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout)


def forge(agent: Agent, user: str, root: int, mode: str = "u", *extra: str) -> str:
    sock = str(agent.run_dir / "mosixd.sock")
    r = agent.run(sys.executable, "-c", FORGER, sock, str(root), mode, *extra, user=user)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_forged_announcement_watches_nothing(
    agent: Agent,
    attacker: str,
    other: str,
) -> None:
    victim = agent.spawn(
        "mosrun", "sh", "-c", "echo ready; exec sleep 600", user=other, stdout=subprocess.PIPE
    )
    own = start_program(agent, attacker)
    try:
        assert victim.stdout is not None and victim.stdout.readline() == "ready\n"
        assert "belongs to another user" in forge(agent, attacker, victim.pid)
        # its own program, but the caller is not a guard
        assert "not a guard" in forge(agent, attacker, own.pid)
        for root, mode, extra in [
            (-1, "u", ()),
            (2**62, "u", ()),
            (own.pid, "x", ()),
            (own.pid, "u", ("nofd",)),
            (1, "u", ()),
        ]:
            assert "Refused" in forge(agent, attacker, root, mode, *extra)
        # the forgers are gone: nothing happened to anyone, the agent serves on
        assert victim.poll() is None and own.poll() is None
        assert agent.proc is not None and agent.proc.poll() is None
        r = agent.run("mosps", user=attacker)
        assert r.returncode == 0, r.stderr
    finally:
        victim.kill()
        own.kill()
