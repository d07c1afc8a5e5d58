"""The guard cannot be entered: its memory is root's and no process of the user,
under the discipline or not, may ptrace it or write /proc/GUARD/mem (before,
a program under mosrun wrote code at the guard's syscall address and ran a
command with Seccomp 0 and NoNewPrivs 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_fixtures import Agent, agent, agent_base  # noqa: F401
from test_root_captures import attacker  # noqa: F401

TIMEOUT = 60

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a user")

ATTACK = r"""
import ctypes, errno, os, sys
me = os.getuid()
guards = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        comm = open(f"/proc/{entry}/comm").read().strip()
        uid = next(int(l.split()[1]) for l in open(f"/proc/{entry}/status") if l.startswith("Uid:"))
    except OSError:
        continue
    if comm == "mosix-guard" and uid == me:
        guards.append(int(entry))
guard = max(guards)  # the newest: our own
try:
    os.close(os.open(f"/proc/{guard}/mem", os.O_RDWR))
    print("mem: opened", flush=True)
except OSError as e:
    print("mem:", errno.errorcode[e.errno], flush=True)
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, guard, 0, 0) == 0:  # PTRACE_ATTACH
    print("ptrace: attached", flush=True)
else:
    print("ptrace:", errno.errorcode[ctypes.get_errno()], flush=True)
"""


def test_the_program_cannot_enter_its_guard(agent: Agent, attacker: str) -> None:  # noqa: F811
    """Under mosrun -e (ptrace itself is unsupported: ENOSYS there)."""
    r = agent.run("mosrun", "-e", sys.executable, "-c", ATTACK, user=attacker)
    assert r.stdout == "mem: EACCES\nptrace: ENOSYS\n", r.stderr


def test_the_users_other_processes_cannot_enter_the_guard(
    agent: Agent,  # noqa: F811
    attacker: str,  # noqa: F811
) -> None:
    """The same user outside the discipline, while its program runs: the guard
    stays untouched and serving."""
    sleeper = agent.spawn(
        "mosrun", "sh", "-c", "echo ready; exec sleep 600", user=attacker, stdout=subprocess.PIPE
    )
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n"
        guard = newest_guard(attacker)
        r = agent.run(sys.executable, "-c", ATTACK, user=attacker)
        assert r.stdout == "mem: EACCES\nptrace: EPERM\n", r.stderr
        status = Path(f"/proc/{guard}/status").read_text()
        assert "\nTracerPid:\t0\n" in status and "\nState:\tS" in status
    finally:
        sleeper.kill()


def newest_guard(user: str) -> int:
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text() == "mosix-guard\n" and entry.stat().st_uid in (0, uid):
                status = (entry / "status").read_text()
                if f"\nUid:\t{uid}\t" in status:
                    found.append(int(entry.name))
        except OSError:
            continue
    return max(found)
