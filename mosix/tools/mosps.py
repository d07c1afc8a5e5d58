"""mosps: list MOSIX processes with where they run and their state."""

from __future__ import annotations

from typing import Annotated

import typer

from mosix.tools.common import app, not_available, run

cli = app("mosps", "List MOSIX processes: pid, user, job, where, state, estimate, command.")


@cli.command()
def main_command(
    user: Annotated[str | None, typer.Option("-u", "--user", help="only this user's")] = None,
    job: Annotated[int | None, typer.Option("-J", "--job", help="only this job ID")] = None,
    all_users: Annotated[bool, typer.Option("-a", "--all", help="every user's")] = False,
) -> None:
    del user, job, all_users
    not_available("mosps", "listing")


def main() -> None:
    run(cli, "mosps")
