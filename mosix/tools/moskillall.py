"""moskillall: signal all of a user's (or a job's) MOSIX processes.

Like kill(1), the signal may be written ``-{signal}`` (``-9``, ``-TERM``,
``-SIGTERM``); SIGSTOP is turned into SIGTSTP, as MOSIX requires.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from mosix.protocol import ListProcesses, Processes
from mosix.tools.common import app, ask_listing, fail, job_id, run, user_id

cli = app(
    "moskillall",
    "Send a signal (default SIGTERM) to all your MOSIX processes, or to those of one job.",
)


def signal_number(text: str) -> int:
    """A signal given as a number, NAME or SIGNAME; SIGSTOP becomes SIGTSTP."""
    name = text.upper()
    if name.isdigit():
        number = int(name)
        valid = {s.value for s in signal.Signals}
        if number not in valid:
            fail("moskillall", f"-{text}: no such signal")
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            number = signal.Signals[name].value
        except KeyError:
            fail("moskillall", f"-{text}: no such signal")
    return signal.SIGTSTP.value if number == signal.SIGSTOP.value else number


@cli.command()
def main_command(
    sig: Annotated[str, typer.Option("-s", "--signal", help="signal name or number")] = "TERM",
    job_text: Annotated[
        str | None, typer.Option("-J", "--job", help="only this job (ID or ~/.jobids token)")
    ] = None,
    user: Annotated[str | None, typer.Option("-u", "--user", help="this user's (root)")] = None,
) -> None:
    number = signal_number(sig)
    job = job_id("moskillall", "-J", job_text) if job_text is not None else None
    uid = user_id("moskillall", user) if user is not None else os.getuid()
    parts = ask_listing("moskillall", ListProcesses(uid=uid, job=job), Processes)
    me = os.getpid()
    refused = 0
    for p in (p for part in parts for p in part.processes):
        if p.pid == me:
            continue
        try:
            os.kill(p.pid, number)
        except ProcessLookupError:
            pass  # ended meanwhile
        except PermissionError:
            refused += 1
            sys.stderr.write(f"moskillall: {p.pid}: not permitted\n")
    if refused:
        raise typer.Exit(1)


def main() -> None:
    argv = sys.argv[1:]
    # kill(1) style: "-9" or "-TERM" as the first word means --signal.
    if argv and argv[0].startswith("-") and argv[0][1:] and argv[0][1] not in "-sJuh":
        argv = ["--signal", argv[0][1:], *argv[1:]]
    run(cli, "moskillall", argv)
