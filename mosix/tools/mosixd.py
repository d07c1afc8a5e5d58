"""mosixd: the MOSIX node agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mosix.tools.common import app, not_available, run

cli = app("mosixd", "The MOSIX node agent: registry, queue, jobs, placement, migration.")


@cli.command()
def main_command(
    foreground: Annotated[
        bool, typer.Option("-f", "--foreground", help="stay in the foreground")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("-c", "--config", help="TOML configuration file")
    ] = None,
) -> None:
    del foreground, config
    not_available("mosixd", "the node agent")


def main() -> None:
    run(cli, "mosixd")
