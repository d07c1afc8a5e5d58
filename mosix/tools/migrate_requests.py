"""migrate's requests to the node agent (no typer: ``migrate PID TARGET``, the common
case, runs through mosix.commands without importing the tool's parser)."""

from __future__ import annotations

import sys

from mosix.display import shown
from mosix.exits import Failure
from mosix.protocol import CHECKPOINT_ACTIONS, Checkpoint, Checkpointed, Done, Migrate

CHECKPOINT_TIMEOUT = 3600.0  # writing a big image takes as long as the disk needs
MIGRATE_TIMEOUT = 3600.0  # a big image over a slow link


def say(message: str) -> None:
    """One line on stderr; words from the agent or a user are shown escaped."""
    sys.stderr.write(shown(message) + "\n")
    sys.stderr.flush()


def move(pid: int, target: str) -> bool:
    """Ask the agent to move the process; False (and one line) when it stays."""
    from mosix.agent_client import connect

    try:
        with connect(autostart=True) as client:
            client.send(Migrate(pid=pid, target=target))
            reply = client.receive(timeout=MIGRATE_TIMEOUT)
    except Failure as e:
        say(f"migrate: {pid}: {e.message}")
        return False
    if isinstance(reply, Done):
        return True
    error = getattr(reply, "error", None) or "the node agent did not answer"
    say(f"migrate: {pid}: {error}")
    return False


def checkpoint(pid: int, action: str) -> bool:
    """Ask the agent for one checkpoint; report it; False when it failed."""
    from mosix.agent_client import connect

    try:
        with connect(autostart=True) as client:
            client.send(Checkpoint(pid=pid, action=action, origin="manual"))
            reply = client.receive(timeout=CHECKPOINT_TIMEOUT)
    except Failure as e:
        say(f"migrate: {pid}: {e.message}")
        return False
    if isinstance(reply, Checkpointed):
        if reply.failed:
            say(f"migrate: {pid}: not checkpointed: {reply.failed} ({shown(reply.path)})")
            return False
        sys.stdout.write(f"{pid}: checkpoint {reply.number} written to {shown(reply.path)}\n")
        sys.stdout.flush()
        return True
    error = getattr(reply, "error", None) or "the node agent did not answer"
    say(f"migrate: {pid}: {error}")
    return False


def plain_request(argv: list[str]) -> int | None:
    """``migrate PID TARGET`` (a process ID and a target, no options): its exit status,
    as the tool's parser would end it; None for any other command line (the parser's)."""
    if len(argv) != 2:
        return None
    first, target = argv
    if not (first.isascii() and first.isdigit()) or not target or target.startswith("-"):
        return None
    act = checkpoint if target in CHECKPOINT_ACTIONS else move
    return 0 if act(int(first), target) else 1
