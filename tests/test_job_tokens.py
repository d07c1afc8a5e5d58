"""Job tokens from ~/.jobids in every tool that takes a job, as the manual says:
mosrun -J, mosps -J, migrate -j, mosq -j and moskillall -J (real agent, real processes)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from support.agents import Agent, start_blocker
from support.waiting import wait_until

TOKEN, JOB = "nightly", 7


def with_jobids(agent: Agent, home: Path) -> dict[str, str]:
    (home / ".jobids").write_text(f"# job tokens\n{JOB} {TOKEN}\n8 other\n")
    return dict(agent.env, HOME=str(home))


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def listed(env: dict[str, str], *options: str) -> set[int]:
    result = run(env, "mosps", *options)
    assert result.returncode == 0, result.stderr
    return {int(line.split()[0]) for line in result.stdout.splitlines()[1:]}


def test_every_tool_takes_a_token_of_the_jobids_file(agent: Agent, tmp_path: Path) -> None:
    env = with_jobids(agent, tmp_path)
    proc = subprocess.Popen(
        ["mosrun", f"-J{TOKEN}", "sh", "-c", "echo $$; exec cat"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None and int(proc.stdout.readline()) == proc.pid
        assert proc.pid in listed(env, "-J", TOKEN)
        assert proc.pid in listed(env, "-J", str(JOB))
        assert proc.pid not in listed(env, "-J", "other")
        checkpoint = run(env, "migrate", "-j", TOKEN, "checkpoint")
        assert checkpoint.returncode == 0, checkpoint.stderr
        assert checkpoint.stdout.startswith(f"{proc.pid}: checkpoint 1 written to ")
        assert (tmp_path / f"ckpt.{proc.pid}.1").exists()

        blocker = start_blocker(agent)
        queued = subprocess.Popen(
            ["mosrun", "-q", f"-J{TOKEN}", "true"], env=env, stdin=subprocess.DEVNULL
        )
        wait_until(lambda: agent.queued_count() == 1, what="the job to be queued")
        assert run(env, "mosq", "run", TOKEN, "-j").returncode == 0
        assert queued.wait(timeout=60) == 0
        assert blocker.stdin is not None
        blocker.stdin.close()
        blocker.wait(timeout=30)

        killed = run(env, "moskillall", "-s", "KILL", "-J", TOKEN)
        assert killed.returncode == 0, killed.stderr
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unknown_token_is_one_line_and_status_125(agent: Agent, tmp_path: Path) -> None:
    env = with_jobids(agent, tmp_path)
    for argv in (
        ["mosps", "-J", "nosuch"],
        ["migrate", "-j", "nosuch", "home"],
        ["mosq", "run", "nosuch", "-j"],
        ["moskillall", "-J", "nosuch"],
    ):
        result = run(env, *argv)
        assert result.returncode == 125, (argv, result.stderr)
        assert result.stderr == (
            f"{argv[0]}: -{'j' if argv[0] in ('migrate', 'mosq') else 'J'}: "
            "'nosuch' is neither a number nor a token in ~/.jobids\n"
        ), argv
