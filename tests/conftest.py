"""The tests' shared parts live in support/ and are registered here as plugins, so a
test module uses their fixtures by name without importing them: a real node agent
per test (support/agents.py), test users (users.py), the namespaces test cluster
(clusters.py), real agents on loopback addresses as a cluster (loopback_agents.py).
Tests that use either cluster are marked ``cluster`` at collection; see pyproject.toml
for the markers.

A trio deprecation fails the run.  In pytest itself pyproject.toml's
filterwarnings says so; every Python process the tests start (agents,
mosrun, the tools) inherits PYTHONWARNINGS below.  PYTHONWARNINGS is read
before trio is imported, so it cannot name trio's class: it names its base,
FutureWarning (trio.TrioDeprecationWarning is one).  tests/test_deprecations.py
proves both.
"""

import os
import signal
import sys
from pathlib import Path

import pytest

import mosix.protocol
from mosix.agent_paths import SYSTEM_RUN_DIR

pytest_plugins = [
    "support.agents",
    "support.users",
    "support.clusters",
    "support.loopback_agents",
    "support.slurm",
]

STRICT_WARNINGS = "error::FutureWarning"

# A run started in the background of a non-interactive shell inherits SIGINT and
# SIGQUIT ignored, and an ignored signal stays ignored across exec: the programs the
# tests start could then not die of ^C as they must.  A handler here is reset to the
# default in every program this process executes.
for _sig in (signal.SIGINT, signal.SIGQUIT):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, signal.default_int_handler)

os.environ["PYTHONWARNINGS"] = ",".join(
    w for w in (os.environ.get("PYTHONWARNINGS", ""), STRICT_WARNINGS) if w
)


@pytest.fixture(scope="session", autouse=True)
def agent_of_this_installation() -> None:
    """The tests that use the embedded default (/run/mosix) must meet this installation's
    agent: one left running by another installation (an older virtual environment), or
    started before this one was installed, is stopped."""
    lock = SYSTEM_RUN_DIR / "mosixd.lock"
    text = lock.read_text().strip() if lock.exists() else ""
    if not text.isdigit():
        return
    try:
        cmdline = Path(f"/proc/{text}/cmdline").read_bytes()
        started = os.stat(f"/proc/{text}").st_mtime
    except OSError:
        return
    from support.agents import stop_embedded_agent  # a plugin: imported once registered

    installed = Path(mosix.protocol.__file__).stat().st_mtime
    if os.fsencode(sys.prefix) + b"/" not in cmdline or started < installed:
        stop_embedded_agent(SYSTEM_RUN_DIR)
