"""What the administration tools share: typer set-up, agent requests, user names."""

from __future__ import annotations

import pwd
import sys
from types import ModuleType
from typing import Annotated, NoReturn, TypeVar

import typer
import typer.core
import typer.main

from mosix.display import shown
from mosix.exits import EXIT_USAGE, Failure
from mosix.protocol import Message

M = TypeVar("M", bound=Message)
JsonFlag = Annotated[
    bool, typer.Option("--json", help="print JSON (its schema: JSON OUTPUT in the man page)")
]


def app(name: str, help_text: str) -> typer.Typer:
    return typer.Typer(
        name=name,
        help=help_text,
        add_completion=True,
        no_args_is_help=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help, as other tools print it (and rich is not imported)
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def fail(tool: str, message: str, status: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr and exit; a user's words in ``message`` are shown escaped."""
    sys.stderr.write(f"{tool}: {shown(message)}\n")
    raise typer.Exit(status)


def ask(tool: str, msg: Message, expect: type[M], autostart: bool = True) -> M:
    """One request to the node agent; failures end the tool with one line."""
    from mosix.agent_client import connect

    try:
        with connect(autostart=autostart) as client:
            return client.request(msg, expect)
    except Failure as e:
        fail(tool, e.message, e.status)


def ask_listing(tool: str, msg: Message, expect: type[M]) -> list[M]:
    """A listing request; long listings arrive in several frames."""
    from mosix.agent_client import connect

    try:
        with connect(autostart=True) as client:
            return client.request_listing(msg, expect)
    except Failure as e:
        fail(tool, e.message, e.status)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def user_id(tool: str, name: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        fail(tool, f"-u {name}: no such user")


def job_id(tool: str, option: str, text: str) -> int:
    """``option``'s job ID: a number or a token of the caller's ~/.jobids (as mosrun -J)."""
    from mosix.arguments import UsageError, home_jobids_resolver, parse_job_id

    try:
        return parse_job_id(option, text, home_jobids_resolver())
    except UsageError as e:
        fail(tool, str(e))


def minutes_text(minutes: int | None) -> str:
    if minutes is None:
        return "-"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return (f"{days}d" if days else "") + (f"{hours}h" if hours or days else "") + f"{mins}m"


def click_exceptions() -> ModuleType:
    """click's exceptions: typer vendors click since 0.2x, older typers use click itself."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer < 0.2x
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def usage_error(where: str, message: str) -> NoReturn:
    """A bad command line: one line naming what was wrong, status EXIT_USAGE (as mosrun)."""
    sys.stderr.write(f"{where}: {shown(' '.join(message.split()))}\n")
    raise SystemExit(EXIT_USAGE)


def run(application: typer.Typer, tool: str, argv: list[str] | None = None) -> NoReturn:
    """Run a tool: its own failures and a bad command line end in one line on stderr and
    EXIT_USAGE (125, as mosrun), --help prints the help (status 0), otherwise the status
    is the command's."""
    command = typer.main.get_command(application)
    if not command.help:  # a tool of one command: its help is the application's
        command.help = application.info.help
    args = sys.argv[1:] if argv is None else argv
    if not args and isinstance(command, typer.core.TyperGroup):
        usage_error(tool, f"no command given ({tool} --help lists them)")
    exceptions = click_exceptions()
    try:
        status = command.main(args=args, prog_name=tool, standalone_mode=False)
    except exceptions.UsageError as e:
        usage_error(e.ctx.command_path if e.ctx is not None else tool, e.format_message())
    except exceptions.ClickException as e:
        usage_error(tool, e.format_message())
    except typer.Abort:
        usage_error(tool, "interrupted")
    raise SystemExit(status if isinstance(status, int) else 0)
