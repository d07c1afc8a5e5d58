"""A real node agent for tests: its own run directory, started and stopped per test
(fixtures ``agent_base``, ``agent``); ``as_user`` runs a command as another user."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.waiting import wait_until


@dataclass
class Agent:
    run_dir: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, MOSIX_RUN_DIR=str(self.run_dir), MOSIX_CONFIG=str(self.config))

    def start(self) -> None:
        read_end, write_end = os.pipe()
        self.proc = subprocess.Popen(
            ["mosixd", "--run-dir", str(self.run_dir), "--ready-fd", str(write_end)],
            pass_fds=[write_end],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stderr=open(self.run_dir.parent / "agent.stderr", "ab"),  # noqa: SIM115
        )
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 30)
        assert ready, "the agent did not get ready"
        assert os.read(read_end, 64) == b"ready\n"
        os.close(read_end)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def run(
        self, *argv: str, user: str | None = None, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            as_user(user, argv), capture_output=True, text=True, env=self.env, timeout=60, **kw
        )  # type: ignore[call-overload]

    def spawn(self, *argv: str, user: str | None = None, **kw: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(as_user(user, argv), text=True, env=self.env, **kw)  # type: ignore[call-overload]
        self.started.append(proc)
        return proc

    def queued_count(self, user: str | None = None) -> int:
        result = self.run("mosq", "count", user=user)
        assert result.returncode == 0, result.stderr
        return int(result.stdout)


def as_user(user: str | None, argv: tuple[str, ...]) -> list[str]:
    if user is None:
        return list(argv)
    path = os.environ.get("PATH", "")
    return [
        "setpriv",
        f"--reuid={user}",
        f"--regid={user}",
        "--init-groups",
        "--",
        "env",
        f"PATH={path}",
        "HOME=/tmp",
        *argv,
    ]


def make_agent(base: Path, slots: int = 1) -> Agent:
    run_dir = base / "run"
    config = base / "mosixd.toml"
    config.write_text(f"[queue]\nslots = {slots}\ndefault_priority = 50\n")
    return Agent(run_dir, config)


@pytest.fixture
def agent_base() -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="mosix-agent-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def agent(agent_base: Path) -> Iterator[Agent]:
    a = make_agent(agent_base)
    a.start()
    yield a
    cleanup(a)


def cleanup(a: Agent) -> None:
    for proc in a.started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    a.stop()
    # an agent started by mosrun itself (embedded default) is stopped by its lock holder pid
    stop_embedded_agent(a.run_dir)


def stop_embedded_agent(run_dir: Path) -> None:
    """Stop an agent that mosrun started on ``run_dir`` (its pid is in the lock file)."""
    lock = run_dir / "mosixd.lock"
    text = lock.read_text().strip() if lock.exists() else ""
    if not text.isdigit():
        return
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"mosixd" in cmdline and str(run_dir).encode() in cmdline:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: gone(pid), what="the agent to stop")


def gone(pid: int) -> bool:
    """The process ended (a zombie waiting for its reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def start_blocker(a: Agent) -> subprocess.Popen[str]:
    """A queued job that takes the only slot until its stdin is closed."""
    proc = a.spawn(
        "mosrun",
        "-q",
        "sh",
        "-c",
        "echo running; exec cat",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    return proc
