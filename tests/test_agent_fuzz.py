"""Random frames and connection patterns against a live agent: it never dies.

An unprivileged user (tests/agent_fuzz_client.py) sends for a bounded time; the
agent must keep its pid, answer throughout, write no traceback, and serve
another user afterwards.  MOSIX_FUZZ_SEED picks another seed (the default one
makes the run repeatable).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup
from test_agent_hostile import agent_pid, assert_still_serving, limited_agent

pytestmark = pytest.mark.slow  # it runs for SECONDS by design

FUZZER = str(Path(__file__).with_name("agent_fuzz_client.py"))
SEED = int(os.environ.get("MOSIX_FUZZ_SEED", "20240607"))
SECONDS = 30.0
ACTIONS = 20_000


@pytest.fixture
def quick_agent(agent_base: Path) -> Iterator[Agent]:
    """Short deadlines, so slow and silent clients are cut off within the run."""
    a = limited_agent(agent_base, "first_frame_seconds = 2\nframe_seconds = 2\n")
    yield a
    cleanup(a)


def test_random_frames_and_connections_never_kill_the_agent(
    quick_agent: Agent, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    a = quick_agent
    pid = agent_pid(a)
    result = a.run(
        sys.executable,
        FUZZER,
        str(a.run_dir / "mosixd.sock"),
        str(SEED),
        str(SECONDS),
        str(ACTIONS),
        user=alice,
    )
    assert result.returncode == 0, f"seed {SEED}: {result.stdout}{result.stderr}"
    assert result.stdout.startswith("actions "), result.stdout
    print(result.stdout)
    log = (a.run_dir.parent / "agent.stderr").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "failed:" not in log, [line for line in log.splitlines() if "failed:" in line][:5]
    assert_still_serving(a, pid, bob)
