"""mosq: the MOSIX queue (list, run, abort, change priority, ...)."""

from __future__ import annotations

from typing import Annotated

import typer

from mosix.tools.common import app, not_available, run

cli = app("mosq", "Inspect and control the MOSIX queue. With -j, IDs are job IDs.")
JobFlag = Annotated[bool, typer.Option("-j", "--jobs", help="IDs are job IDs, not pids")]
Id = Annotated[int, typer.Argument(help="process ID (or job ID with -j)")]


@cli.command("list")
def list_queue(jobs: JobFlag = False) -> None:
    """Your queued jobs."""
    del jobs
    not_available("mosq", "list")


@cli.command("listall")
def list_all(jobs: JobFlag = False) -> None:
    """Every user's queued jobs."""
    del jobs
    not_available("mosq", "listall")


@cli.command("count")
def count() -> None:
    """How many jobs are queued."""
    not_available("mosq", "count")


@cli.command("run")
def run_now(ident: Id, jobs: JobFlag = False) -> None:
    """Start a queued job now, bypassing the queue."""
    del ident, jobs
    not_available("mosq", "run")


@cli.command("abort")
def abort(ident: Id, jobs: JobFlag = False) -> None:
    """Abort a queued job (-q jobs are killed, -Q jobs start running)."""
    del ident, jobs
    not_available("mosq", "abort")


@cli.command("cngpri")
def change_priority(
    priority: Annotated[int, typer.Argument(min=0, help="new priority (lower runs first)")],
    ident: Id,
    jobs: JobFlag = False,
) -> None:
    """Change a queued job's priority."""
    del priority, ident, jobs
    not_available("mosq", "cngpri")


@cli.command("advance")
def advance(ident: Id, jobs: JobFlag = False) -> None:
    """Move a job ahead of the others of the same priority."""
    del ident, jobs
    not_available("mosq", "advance")


@cli.command("retard")
def retard(ident: Id, jobs: JobFlag = False) -> None:
    """Move a job behind the others of the same priority."""
    del ident, jobs
    not_available("mosq", "retard")


def main() -> None:
    run(cli, "mosq")
