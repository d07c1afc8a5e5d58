"""migrate: move, freeze or checkpoint a MOSIX process (or a whole job).

``checkpoint`` saves the process's image (by its -C/-N series), ``chkstop``
then stops it, ``chkexit`` then ends it; each prints the file written.  With
``-j{job}`` the action applies to every process of the job.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mosix.protocol import CHECKPOINT_ACTIONS, ListProcesses, Processes
from mosix.tools.common import app, ask_listing, fail, job_id, run
from mosix.tools.migrate_requests import checkpoint, move

ACTIONS = ("home", "out", "freeze", "continue", "checkpoint", "chkstop", "chkexit")

cli = app(
    "migrate",
    "Move a MOSIX process to a node, home or out; freeze or continue it; checkpoint it.\n\n"
    "TARGET is a node number, an IPv4 address, a host name, or one of: " + ", ".join(ACTIONS),
)


def job_pids(job: int) -> list[int]:
    listing = ask_listing("migrate", ListProcesses(all_users=True, job=job), Processes)
    return sorted(p.pid for part in listing for p in part.processes)


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
