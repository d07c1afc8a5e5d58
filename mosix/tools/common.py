"""What the administration tools share: typer set-up and common failures."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from mosix.exits import EXIT_USAGE


def app(name: str, help_text: str) -> typer.Typer:
    return typer.Typer(
        name=name,
        help=help_text,
        add_completion=True,
        no_args_is_help=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def fail(tool: str, message: str, status: int = EXIT_USAGE) -> NoReturn:
    sys.stderr.write(f"{tool}: {message}\n")
    raise typer.Exit(status)


def not_available(tool: str, what: str) -> NoReturn:
    fail(tool, f"{what}: not available yet (needs the node agent)")


def run(application: typer.Typer, tool: str) -> None:
    application(prog_name=tool)
