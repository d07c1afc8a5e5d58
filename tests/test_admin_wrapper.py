"""The administrator's wrapper (mosrun(1), FOR THE SYSTEM ADMINISTRATOR): a
set-group-ID program that checks and modifies mosrun's parameters, then
executes ``mosrun -g PARAMETERS``.

packaging/mosrun-wrapper.c (its policy: every job queued) is built and installed
as the manual says, set-group-ID to a group of the site's; an unprivileged user
runs programs through it.  mosrun keeps the wrapper's group only until its
last request to the node agent: neither a queued mosrun while it waits nor the
program keeps it, whichever way mosrun starts it: a plain start, -S, -E, and
-R of a checkpoint.
The tests of what the program runs as run twice: with an agent open to all, and with
one enforcing the wrapper.

With ``[site] mosrun_group`` the node agent starts MOSIX work only for that
effective group (or root), so the wrapper is the only way in: a plain mosrun
is refused in one line, the wrapper's jobs run (queued too) without the group,
and the caller's environment cannot steer the Python that holds the group.
What starts past the wrapper (the launcher run directly) runs, but the agent does
not take it for MOSIX work: it adopts from /proc only the descendants of what its
gate let in, by the admission they inherit.
"""

from __future__ import annotations

import functools
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
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


@pytest.fixture(params=[False, True], ids=["open", "enforced"])
def enforced(request: pytest.FixtureRequest) -> bool:
    """Whether the agent has ``[site] mosrun_group`` (the wrapper is the only way in)."""
    return bool(request.param)


@pytest.fixture
def site(
    agent_base: Path, site_gid: int, users: tuple[str, str], enforced: bool
) -> Iterator[Agent]:
    """A node agent, and in its directory the site's wrapper (``mosrun-site``, set-group-ID
    to the site's group) and ``gidshow``."""
    mosrun = shutil.which("mosrun")
    assert mosrun is not None
    python = Path(mosrun).parent / "python"  # the installation's own interpreter
    wrapper = build_c(
        REPO / "packaging" / "mosrun-wrapper.c",
        agent_base / "mosrun-site",
        f'-DMOSRUN="{mosrun}"',
        f'-DPYTHON="{python}"',
    )
    os.chown(wrapper, 0, site_gid)
    wrapper.chmod(0o2755)  # after chown, which clears it
    build_c(REPO / "tests" / "cprogs" / "gidshow.c", agent_base / "gidshow", "-O1")
    agent = make_agent(agent_base)
    if enforced:
        with agent.config.open("a") as config:
            config.write(f'[site]\nmosrun_group = "{SITE_GROUP}"\n')
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


def test_a_batch_job_runs_as_the_users_group(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    """-E: on a node without a cluster the batch job runs here, outside the discipline."""
    user = users[0]
    done = site.run(
        str(agent_base / "mosrun-site"), "-E", str(agent_base / "gidshow"), user=user, input="\n"
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == gid_line(users_gid(user)) * 2


def status_gid_line(pid: int) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines(keepends=True)
    return next(line for line in lines if line.startswith("Gid:"))


def one_running_one_queued(
    site: Agent, agent_base: Path, user: str
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """Two gidshow jobs of ``user`` through the wrapper: the first runs (it holds the
    only slot and waits for a line), the second waits in the queue."""
    wrapper, gidshow = str(agent_base / "mosrun-site"), str(agent_base / "gidshow")
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    first = site.spawn(wrapper, gidshow, user=user, **pipes)
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline() == gid_line(users_gid(user))  # runs: the slot is taken
    second = site.spawn(wrapper, gidshow, user=user, **pipes)
    wait_until(lambda: site.queued_count(user) == 1, what="the second job queued")
    return first, second


def test_a_queued_mosrun_waits_as_the_users_group(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    """The wrapper queues every job; the one waiting for the only slot holds no group of
    the wrapper's meanwhile (mosrun drops it before anything else)."""
    user = users[0]
    first, second = one_running_one_queued(site, agent_base, user)
    assert status_gid_line(second.pid) == gid_line(users_gid(user))
    first.stdin.write("\n")
    first.stdin.close()
    assert first.wait(timeout=60) == 0
    out, err = second.communicate("\n", timeout=60)
    assert (second.returncode, err, out) == (0, "", gid_line(users_gid(user)) * 2)


REFUSAL = (
    "mosrun: MOSIX work starts here only through the site's mosrun wrapper "
    f"(group '{SITE_GROUP}')\n"
)


@pytest.mark.parametrize(
    "options",
    [(), ("-q",), ("-E",), ("-b",)],
    ids=["plain", "queued", "batch-job", "placed"],
)
@pytest.mark.parametrize("enforced", [True], ids=["enforced"])
def test_a_plain_mosrun_is_refused_and_starts_nothing(
    site: Agent, agent_base: Path, users: tuple[str, str], options: tuple[str, ...]
) -> None:
    marker = agent_base / "ran"
    done = site.run("mosrun", *options, "touch", str(marker), user=users[0])
    assert (done.returncode, done.stdout) == (125, "")
    said = "-q: " if options == ("-q",) else ""  # the queue's refusals name the option
    assert done.stderr == REFUSAL.replace("mosrun: ", f"mosrun: {said}")
    assert not marker.exists()
    assert site.queued_count() == 0
    listed = site.run("mosps", "--json")  # queries stay open to everyone
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() in ("[]", "")


@pytest.mark.parametrize("enforced", [True], ids=["enforced"])
def test_roots_mosrun_is_served(site: Agent, agent_base: Path, site_gid: int) -> None:
    done = site.run("mosrun", str(agent_base / "gidshow"), input="\n")
    assert (done.returncode, done.stderr) == (0, "")
    assert site_gid != 0 and done.stdout == gid_line(0) * 2


def hostile_python(base: Path, marker: Path) -> dict[str, str]:
    """Environment variables that would run code of the caller's in a Python that
    honoured them: it would write its effective gid into ``marker``."""
    code = f"import os\nopen({str(marker)!r}, 'w').write(str(os.getegid()))\n"
    path = base / "hostile"
    (path / "mosix").mkdir(parents=True)
    (path / "sitecustomize.py").write_text(code)
    (path / "mosix" / "__init__.py").write_text(code)
    venv = base / "hostile-venv"  # another installation, found through PYTHONEXECUTABLE
    packages = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    (packages / "site-packages").mkdir(parents=True)
    (venv / "bin").mkdir()
    home = Path(sys.base_prefix) / "bin"
    (venv / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    (packages / "site-packages" / "sitecustomize.py").write_text(code)
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            (Path(root) / name).chmod(0o755)
    return {
        "PYTHONPATH": str(path),
        "PYTHONSTARTUP": str(path / "sitecustomize.py"),
        "PYTHONEXECUTABLE": str(venv / "bin" / "python"),
        "__PYVENV_LAUNCHER__": str(venv / "bin" / "python"),
    }


@pytest.mark.parametrize("enforced", [True], ids=["enforced"])
@pytest.mark.parametrize("variable", ["PYTHONPATH", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"])
def test_the_callers_environment_cannot_steer_the_python_with_the_group(
    site: Agent, agent_base: Path, users: tuple[str, str], variable: str
) -> None:
    marker = agent_base / "injected" / "egid"
    marker.parent.mkdir()
    marker.parent.chmod(0o777)
    env = hostile_python(agent_base / "python", marker)
    user = users[0]
    done = site.run(
        "env",
        f"{variable}={env[variable]}",
        str(agent_base / "mosrun-site"),
        str(agent_base / "gidshow"),
        user=user,
        input="\n",
    )
    assert not marker.exists(), f"code of the caller's ran with gid {marker.read_text()}"
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == gid_line(users_gid(user)) * 2


@pytest.mark.parametrize("enforced", [True], ids=["enforced"])
def test_a_wrapper_that_runs_mosrun_by_its_script_line_is_refused(
    site: Agent, agent_base: Path, users: tuple[str, str], site_gid: int
) -> None:
    """The manual's "executes mosrun -g" taken literally runs Python by the script's
    line, not isolated: mosrun says the wrapper is unsafe, and runs nothing."""
    mosrun = shutil.which("mosrun")
    naive = build_c(
        f'#include <unistd.h>\nint main(int c, char **v) {{ (void)c; v[0] = "mosrun";'
        f' execv("{mosrun}", v); return 126; }}\n',
        agent_base / "naive-site",
    )
    os.chown(naive, 0, site_gid)
    naive.chmod(0o2755)
    marker = agent_base / "ran"
    done = site.run(str(naive), "-g", "touch", str(marker), user=users[0])
    assert (done.returncode, done.stdout) == (125, "")
    assert done.stderr == "mosrun: -g: the wrapper started mosrun unsafely: it is not 'python -I'\n"
    assert not marker.exists()


@pytest.mark.parametrize("enforced", [True], ids=["enforced"])
def test_a_queued_job_of_the_wrapper_keeps_its_place_across_an_agent_restart(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    """The queued mosrun waits without the group; after the agent is killed and started
    again it presents its ticket, which lets it in, and runs when its turn comes."""
    user = users[0]
    first, second = one_running_one_queued(site, agent_base, user)
    site.kill9()
    site.start()
    wait_until(lambda: site.queued_count(user) == 1, what="the queued job back in the queue")
    first.stdin.write("\n")
    first.stdin.close()
    assert first.wait(timeout=60) == 0
    out, err = second.communicate("\n", timeout=60)
    assert (second.returncode, err, out) == (0, "", gid_line(users_gid(user)) * 2)


LAUNCH_DIRECTLY = """
import os, sys
from mosix.discipline.launcher import exec_launcher
env = dict(os.environ, MOSIX_INHERIT=sys.argv[1], MOSIX_AGENT_SOCKET=sys.argv[3])
if sys.argv[2]:
    env["MOSIX_ADMISSION"] = sys.argv[2]
exec_launcher("e", "mosrun", "/bin/sh", ["sh", "-c", "echo $$; exec cat"], env)
"""


def listed(site: Agent, user: str) -> set[int]:
    done = site.run("mosps", "--json", user=user)
    assert done.returncode == 0, done.stderr
    return {p["pid"] for p in json.loads(done.stdout or "[]")}


def started_env(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in entries if b"=" in e)


def running(pid: int, comm: str) -> bool:
    return Path(f"/proc/{pid}/comm").read_text().strip() == comm


def test_only_what_the_wrapper_started_is_taken_for_mosix_work(
    site: Agent, agent_base: Path, users: tuple[str, str], enforced: bool
) -> None:
    """The wrapper's program and its child are MOSIX processes.  The launcher run directly
    (the package's modules, past the wrapper) with the same settings, or with the child's
    admission and settings of its own, runs, but with the site's group it is not one."""
    user = users[0]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    tree = site.spawn(
        str(agent_base / "mosrun-site"), "sh", "-c", "sleep 600 & echo $!; exec cat",
        user=user, **pipes,
    )  # fmt: skip
    procs = [tree]
    child = 0
    try:
        assert tree.stdout is not None
        child = int(tree.stdout.readline())
        wait_until(lambda: running(child, "sleep"), what="the child's exec")  # its own environ
        env = started_env(child)
        words, admission = env["MOSIX_INHERIT"], env.get("MOSIX_ADMISSION", "")
        assert bool(admission) == enforced
        python = str(Path(str(shutil.which("mosrun"))).parent / "python")
        socket = env["MOSIX_AGENT_SOCKET"]  # as if its mosrun had registered
        past = {}
        other = f"{words} -m7".strip()
        for name, (w, a) in {"same": (words, ""), "copied": (other, admission)}.items():
            proc = site.spawn(python, "-P", "-c", LAUNCH_DIRECTLY, w, a, socket, user=user, **pipes)
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, proc.communicate(timeout=30)  # what the launcher said
            pid = past[name] = int(line)
            wait_until(functools.partial(running, pid, "cat"), what="its exec of cat")
        pids = listed(site, user)
        assert {tree.pid, child} <= pids
        assert (set(past.values()) & pids) == (set() if enforced else set(past.values()))
    finally:
        if child:
            os.kill(child, 9)
        for proc in procs:
            proc.communicate(timeout=60)
    assert tree.returncode == 0


def test_the_lines_of_the_wrappers_batch_are_mosix_processes(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    """-S through the wrapper: the runner registers through the gate, and its lines are
    adopted by the admission they inherit from it."""
    user = users[0]
    commands = agent_base / "lines"
    commands.write_text("echo $$; exec sleep 600\n")
    batch = site.spawn(
        str(agent_base / "mosrun-site"), "-S1", str(commands),
        user=user, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert batch.stdout is not None
    line = int(batch.stdout.readline())
    try:
        wait_until(lambda: running(line, "sleep"), what="the line's exec")
        assert {batch.pid, line} <= listed(site, user)
    finally:
        os.kill(line, 9)
        _, err = batch.communicate(timeout=60)
    assert batch.returncode == 1, err  # the one line was killed


@pytest.mark.parametrize("enforced", [True], ids=["enforced"])
def test_a_plain_batch_is_refused_and_runs_no_line(
    site: Agent, agent_base: Path, users: tuple[str, str]
) -> None:
    marker = agent_base / "ran"
    commands = agent_base / "lines"
    commands.write_text(f"touch {marker}\n")
    done = site.run("mosrun", "-S1", str(commands), user=users[0])
    assert (done.returncode, done.stdout, done.stderr) == (125, "", REFUSAL)
    assert not marker.exists()
