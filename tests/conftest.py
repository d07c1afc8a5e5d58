"""Shared fixtures: a real node agent per test (see agent_fixtures.py).

A trio deprecation fails the run.  In pytest itself pyproject.toml's
filterwarnings says so; every Python process the tests start (agents,
mosrun, the tools) inherits PYTHONWARNINGS below.  PYTHONWARNINGS is read
before trio is imported, so it cannot name trio's class: it names its base,
FutureWarning (trio.TrioDeprecationWarning is one).  tests/test_deprecations.py
proves both.
"""

import os

from agent_fixtures import agent, agent_base, hostile_users, two_users  # noqa: F401

STRICT_WARNINGS = "error::FutureWarning"

os.environ["PYTHONWARNINGS"] = ",".join(
    w for w in (os.environ.get("PYTHONWARNINGS", ""), STRICT_WARNINGS) if w
)
