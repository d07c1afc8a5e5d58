"""The guard cannot be entered: its memory is root's and no process of the user,
under the discipline or not, may ptrace it or write /proc/GUARD/mem (before,
a program under mosrun wrote code at the guard's syscall address and ran a
command with Seccomp 0 and NoNewPrivs 0)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.agents import Agent
from test_root_captures import attacker  # noqa: F401

TIMEOUT = 60

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a user")

ATTACK = r"""
import ctypes, errno, os, sys


def started(pid):
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat[stat.rfind(")") + 2 :].split()[19])


me, since = os.getuid(), started(int(sys.argv[1]) if len(sys.argv) > 1 else os.getpid())
guards = []
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        comm = open(f"/proc/{entry}/comm").read().strip()
        uid = next(int(l.split()[1]) for l in open(f"/proc/{entry}/status") if l.startswith("Uid:"))
        if comm == "mosix-guard" and uid == me and started(entry) >= since:
            guards.append((started(entry), int(entry)))
    except OSError:
        continue
guard = min(guards)[1]  # the first started since the program: its own
try:
    os.close(os.open(f"/proc/{guard}/mem", os.O_RDWR))
    print("mem: opened", flush=True)
except OSError as e:
    print("mem:", errno.errorcode[e.errno], flush=True)
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, guard, 0, 0) == 0:  # PTRACE_ATTACH
    print("ptrace: attached", flush=True)
    libc.ptrace(17, guard, 0, 0)  # PTRACE_DETACH: the test leaves nothing stopped
    os.kill(guard, 18)
else:
    print("ptrace:", errno.errorcode[ctypes.get_errno()], flush=True)
"""


def test_the_program_cannot_enter_its_guard(agent: Agent, attacker: str) -> None:  # noqa: F811
    """Under mosrun -e (ptrace itself is unsupported: ENOSYS there)."""
    r = agent.run("mosrun", "-e", sys.executable, "-c", ATTACK, user=attacker)
    assert r.stdout == "mem: EACCES\nptrace: ENOSYS\n", r.stderr


def test_the_users_other_processes_cannot_enter_the_guard(
    agent: Agent,
    attacker: str,  # noqa: F811
) -> None:
    """The same user outside the discipline, while its program runs: the guard
    stays untouched and serving."""
    sleeper = agent.spawn(
        "mosrun", "sh", "-c", "echo ready; exec sleep 600", user=attacker, stdout=subprocess.PIPE
    )
    try:
        assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n"
        r = agent.run(sys.executable, "-c", ATTACK, str(sleeper.pid), user=attacker)
        assert r.stdout == "mem: EACCES\nptrace: EPERM\n", r.stderr
        # the guard serves on: an unsupported call under -u still kills
        r = agent.run(
            "mosrun",
            sys.executable,
            "-c",
            "import ctypes; ctypes.CDLL(None).syscall(103, 3, 0, 0)",
            user=attacker,
        )
        assert "unsupported system call" in r.stderr and r.returncode == -9, r.stderr
    finally:
        sleeper.kill()
