"""The installed commands' entry points (pyproject.toml's [project.scripts]).

Each command starts here and imports only what its command line needs: ``--help``
alone prints the text generated from the command's own parser (mosix.help_text)
without importing that parser (typer, for the tools), and ``migrate PID TARGET``
goes straight to its request (mosix.tools.migrate_requests); every other command
line goes to the command's parser as before.
"""

from __future__ import annotations

import os
import sys

from mosix.exits import EXIT_USAGE

# No typing import (NoReturn): outside an editable install, site imports no typing, and
# importing it would cost a --help a fifth of its time.

TYPER_HELP = ("--help", "-h")  # the typer tools' help options (mosix.tools.common.app)
MOSRUN_HELP = ("--help",)  # -h is a placement (the home node), as in MOSIX
HELP_WIDTH = 80  # click wraps help at the terminal's width, at most 80 columns


def wide_enough() -> bool:
    """Whether typer would render the help at 80 columns, as it was generated (as
    click measures: $COLUMNS, else the terminal on stdout, else 80)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns) >= HELP_WIDTH
    try:
        width = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return True
    return width == 0 or width >= HELP_WIDTH


def help_only(tool: str, options: tuple[str, ...], wrapped: bool) -> None:
    """Print ``tool``'s help and exit when the command line is one help option."""
    if len(sys.argv) != 2 or sys.argv[1] not in options or (wrapped and not wide_enough()):
        return
    from mosix.help_text import HELP

    sys.stdout.write(HELP[tool])
    sys.stdout.flush()
    raise SystemExit(0)


def leave(status: int) -> None:
    """Exit once the output is out, without the interpreter's teardown of its modules
    (as long as importing the protocol took): nothing is left open to close."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        status = status or EXIT_USAGE
    os._exit(status)


def mosrun() -> None:
    help_only("mosrun", MOSRUN_HELP, wrapped=False)
    from mosix.cli import mosrun_main

    mosrun_main()


def mosenv() -> None:
    help_only("mosenv", MOSRUN_HELP, wrapped=False)
    from mosix.cli import mosenv_main

    mosenv_main()


def native() -> None:
    help_only("native", MOSRUN_HELP, wrapped=False)
    from mosix.cli import native_main

    native_main()


def migrate() -> None:
    help_only("migrate", TYPER_HELP, wrapped=True)
    from mosix.tools.migrate_requests import plain_request

    try:
        status = plain_request(sys.argv[1:])
    except KeyboardInterrupt:
        sys.stderr.write("migrate: interrupted\n")
        raise SystemExit(EXIT_USAGE) from None
    if status is not None:
        leave(status)
    from mosix.tools import migrate as tool

    tool.main()


def mosps() -> None:
    help_only("mosps", TYPER_HELP, wrapped=True)
    from mosix.tools import mosps as tool

    tool.main()


def mosq() -> None:
    help_only("mosq", TYPER_HELP, wrapped=True)
    from mosix.tools import mosq as tool

    tool.main()


def moskillall() -> None:
    help_only("moskillall", TYPER_HELP, wrapped=True)
    from mosix.tools import moskillall as tool

    tool.main()


def mosctl() -> None:
    help_only("mosctl", TYPER_HELP, wrapped=True)
    from mosix.tools import mosctl as tool

    tool.main()


def mosmon() -> None:
    help_only("mosmon", TYPER_HELP, wrapped=True)
    from mosix.tools import mosmon as tool

    tool.main()


def mosixd() -> None:
    help_only("mosixd", TYPER_HELP, wrapped=True)
    from mosix.tools import mosixd as tool

    tool.main()


def testcluster() -> None:
    help_only("mosix-testcluster", TYPER_HELP, wrapped=True)
    from mosix.testcluster import cli as tool

    tool.main()


def slurm() -> None:
    help_only("mosix-slurm", TYPER_HELP, wrapped=True)
    from mosix.slurm import cli as tool

    tool.main()
