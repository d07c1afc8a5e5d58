"""migrate: move, freeze or checkpoint a MOSIX process (or a whole job)."""

from __future__ import annotations

from typing import Annotated

import typer

from mosix.tools.common import app, fail, not_available, run

ACTIONS = ("home", "out", "freeze", "continue", "checkpoint", "chkstop", "chkexit")

cli = app(
    "migrate",
    "Move a MOSIX process to a node, home or out; freeze or continue it; checkpoint it.\n\n"
    "TARGET is a node number, an IPv4 address, a host name, or one of: " + ", ".join(ACTIONS),
)


@cli.command()
def main_command(
    pid: Annotated[int | None, typer.Argument(help="process ID (omit with -j)")] = None,
    target: Annotated[
        str,
        typer.Argument(help="node, home, out, freeze, continue, checkpoint, chkstop or chkexit"),
    ] = "",
    job: Annotated[
        int | None, typer.Option("-j", "--job", help="act on every process of this job ID")
    ] = None,
) -> None:
    if pid is None and job is None:
        fail("migrate", "give a process ID or -j{job}")
    if not target:
        fail("migrate", "give where to (node, home, out) or what to do (freeze, checkpoint, ...)")
    not_available("migrate", target)


def main() -> None:
    run(cli, "migrate")
