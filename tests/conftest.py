"""Shared fixtures: a real node agent per test (see agent_fixtures.py)."""

from agent_fixtures import agent, agent_base  # noqa: F401
