"""Moved to support/ (agents, users, waiting): kept as a re-export for the modules other
branches are changing now (test_agent*, test_guard_*, test_root_captures,
test_bytes_arguments, test_display_escaping); remove once they import from support."""

from support.agents import (
    Agent,
    agent,
    agent_base,
    as_user,
    cleanup,
    gone,
    make_agent,
    stop_embedded_agent,
)
from support.users import private_dirs_on_the_way, users_fixture
from support.waiting import wait_until

__all__ = [
    "Agent",
    "agent",
    "agent_base",
    "as_user",
    "cleanup",
    "gone",
    "make_agent",
    "private_dirs_on_the_way",
    "stop_embedded_agent",
    "users_fixture",
    "wait_until",
]
