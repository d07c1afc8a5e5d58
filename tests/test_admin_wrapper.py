"""The administrator's wrapper (mosrun(1), FOR THE SYSTEM ADMINISTRATOR): a
set-group-ID program that checks and modifies mosrun's parameters, then
executes ``mosrun -g PARAMETERS``.

packaging/mosrun-wrapper.c (its policy: every job queued) is built and installed
as the manual says, set-group-ID to a group of the site's; an unprivileged user
runs programs through it.  Neither mosrun nor the program keeps the wrapper's
group, whichever way mosrun starts it: a plain start, -S, and -R of a
checkpoint (which kept it until mosrun dropped the group before anything else).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent
from support.cbuild import build_c
from support.users import users_fixture
from support.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
SITE_GROUP = "mosixsite"

users = users_fixture(("mosixsite1", "mosixsite2"))


@pytest.fixture(scope="module")
def site_gid() -> Iterator[int]:
    subprocess.run(["groupadd", "-f", SITE_GROUP], check=True)
    try:
        yield grp.getgrnam(SITE_GROUP).gr_gid
    finally:
        subprocess.run(["groupdel", SITE_GROUP], check=False)


@pytest.fixture
def site(agent_base: Path, site_gid: int, users: tuple[str, str]) -> Iterator[Agent]:
    """A node agent, and in its directory the site's wrapper (``mosrun-site``, set-group-ID
    to the site's group) and ``gidshow``."""
    mosrun = shutil.which("mosrun")
    assert mosrun is not None
    wrapper = build_c(
        REPO / "packaging" / "mosrun-wrapper.c", agent_base / "mosrun-site", f'-DMOSRUN="{mosrun}"'
    )
    os.chown(wrapper, 0, site_gid)
    wrapper.chmod(0o2755)  # after chown, which clears it
    build_c(REPO / "tests" / "cprogs" / "gidshow.c", agent_base / "gidshow", "-O1")
    agent = make_agent(agent_base)
    agent.start()
    yield agent
    cleanup(agent)


def gid_line(gid: int) -> str:
    """/proc/PID/status's line of a process whose every group id is ``gid``."""
    return f"Gid:\t{gid}\t{gid}\t{gid}\t{gid}\n"


def users_gid(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def test_the_program_runs_as_the_users_group_not_the_wrappers(
    site: Agent, agent_base: Path, users: tuple[str, str], site_gid: int
) -> None:
    user = users[0]
    done = site.run(
        str(agent_base / "mosrun-site"), str(agent_base / "gidshow"), user=user, input="\n"
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == gid_line(users_gid(user)) * 2
    assert users_gid(user) != site_gid


def test_batch_lines_run_as_the_users_group(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    user = users[0]
    commands = agent_base / "lines"
    # each line's bash drops a set-group-ID itself: look at its parent, the -S runner
    commands.write_text("grep ^Gid: /proc/$PPID/status\n" * 2)
    done = site.run(str(agent_base / "mosrun-site"), "-S1", str(commands), user=user)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == gid_line(users_gid(user)) * 2


def test_a_recovered_program_runs_as_the_users_group(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    user = users[0]
    space = agent_base / "space"
    space.mkdir()
    uid = pwd.getpwnam(user).pw_uid
    os.chown(space, uid, users_gid(user))
    wrapper, gidshow = str(agent_base / "mosrun-site"), str(agent_base / "gidshow")
    proc = site.spawn(
        wrapper,
        f"-C{space / 'ck'}",
        gidshow,
        user=user,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == gid_line(users_gid(user))  # now waiting for a line
    saved = site.run("migrate", str(proc.pid), "checkpoint", user=user)
    assert saved.returncode == 0, saved.stderr
    proc.kill()
    proc.wait()
    done = site.run(wrapper, f"-R{space / 'ck.1'}", user=user, input="\n")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == gid_line(users_gid(user))


def status_gid_line(pid: int) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines(keepends=True)
    return next(line for line in lines if line.startswith("Gid:"))


def test_a_queued_mosrun_waits_as_the_users_group(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    """The wrapper queues every job; the one waiting for the only slot holds no group of
    the wrapper's meanwhile (mosrun drops it before anything else)."""
    user = users[0]
    wrapper, gidshow = str(agent_base / "mosrun-site"), str(agent_base / "gidshow")
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    first = site.spawn(wrapper, gidshow, user=user, **pipes)
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline() == gid_line(users_gid(user))  # runs: the slot is taken
    second = site.spawn(wrapper, gidshow, user=user, **pipes)
    wait_until(lambda: site.queued_count(user) == 1, what="the second job queued")
    assert status_gid_line(second.pid) == gid_line(users_gid(user))
    first.stdin.write("\n")
    first.stdin.close()
    assert first.wait(timeout=60) == 0
    out, err = second.communicate("\n", timeout=60)
    assert (second.returncode, err, out) == (0, "", gid_line(users_gid(user)) * 2)
