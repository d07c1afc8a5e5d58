"""migrate: move, freeze or checkpoint a MOSIX process (or a whole job).

``checkpoint`` saves the process's image (by its -C/-N series), ``chkstop``
then stops it, ``chkexit`` then ends it; each prints the file written.  With
``-j{job}`` the action applies to every process of the job.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mosix.display import shown
from mosix.exits import Failure
from mosix.protocol import (
    CHECKPOINT_ACTIONS,
    Checkpoint,
    Checkpointed,
    Done,
    ListProcesses,
    Migrate,
    Processes,
)
from mosix.tools.common import app, ask_listing, fail, job_id, run

ACTIONS = ("home", "out", "freeze", "continue", "checkpoint", "chkstop", "chkexit")
CHECKPOINT_TIMEOUT = 3600.0  # writing a big image takes as long as the disk needs

cli = app(
    "migrate",
    "Move a MOSIX process to a node, home or out; freeze or continue it; checkpoint it.\n\n"
    "TARGET is a node number, an IPv4 address, a host name, or one of: " + ", ".join(ACTIONS),
)


def job_pids(job: int) -> list[int]:
    listing = ask_listing("migrate", ListProcesses(all_users=True, job=job), Processes)
    return sorted(p.pid for part in listing for p in part.processes)


MIGRATE_TIMEOUT = 3600.0  # a big image over a slow link


def say(message: str) -> None:
    """One line on stderr; words from the agent or a user are shown escaped."""
    typer.echo(shown(message), err=True)


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
        typer.echo(f"{pid}: checkpoint {reply.number} written to {shown(reply.path)}")
        return True
    error = getattr(reply, "error", None) or "the node agent did not answer"
    say(f"migrate: {pid}: {error}")
    return False


@cli.command()
def main_command(
    first: Annotated[str, typer.Argument(help="process ID (omit with -j)", metavar="PID")] = "",
    target: Annotated[
        str,
        typer.Argument(help="node, home, out, freeze, continue, checkpoint, chkstop or chkexit"),
    ] = "",
    job_text: Annotated[
        str | None,
        typer.Option(
            "-j", "--job", help="act on every process of this job (ID or ~/.jobids token)"
        ),
    ] = None,
) -> None:
    job = job_id("migrate", "-j", job_text) if job_text is not None else None
    if job is not None and not target:
        first, target = "", first  # migrate -j{job} TARGET
    if not first and job is None:
        fail("migrate", "give a process ID or -j{job}")
    if first and job is not None:
        fail("migrate", "give a process ID or -j{job}, not both")
    if first and not first.isdigit():
        fail("migrate", f"{first}: not a process ID")
    pid = int(first) if first else None
    if not target:
        fail("migrate", "give where to (node, home, out) or what to do (freeze, checkpoint, ...)")
    pids = [pid] if pid is not None else job_pids(job or 0)
    if not pids:
        fail("migrate", f"-j{job}: no processes in this job")
    act = checkpoint if target in CHECKPOINT_ACTIONS else move
    failures = [p for p in pids if not act(p, target)]
    if failures:
        raise typer.Exit(1)


def main() -> None:
    run(cli, "migrate")
