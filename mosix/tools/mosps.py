"""mosps: list MOSIX processes with where they run and their state."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mosix.display import shown, shown_words
from mosix.protocol import ListProcesses, Processes
from mosix.tools.common import (
    JsonFlag,
    app,
    ask_listing,
    job_id,
    minutes_text,
    run,
    user_id,
    user_name,
)
from mosix.tools.json_output import emit, process_record

cli = app(
    "mosps",
    "List MOSIX processes: pid, user, job, where it runs (home, or the node its copy runs "
    "on), state, -D estimate, command. Users see their own; root sees everyone's. "
    "With -w, a process that cannot migrate gets a second line saying why "
    "(e.g. 'why here: it has locked memory').",
)

HEADER = f"{'PID':>7} {'USER':<10} {'JOB':>5} {'WHERE':<8} {'STATE':<10} {'EST':>8}  COMMAND"


@cli.command()
def main_command(
    user: Annotated[str | None, typer.Option("-u", "--user", help="only this user's")] = None,
    job_text: Annotated[
        str | None, typer.Option("-J", "--job", help="only this job (ID or ~/.jobids token)")
    ] = None,
    all_users: Annotated[bool, typer.Option("-a", "--all", help="every user's (root)")] = False,
    why: Annotated[
        bool, typer.Option("-w", "--why", help="say why a process cannot migrate")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    uid = user_id("mosps", user) if user is not None else None
    job = job_id("mosps", "-J", job_text) if job_text is not None else None
    everyone = all_users or (uid is None and os.geteuid() == 0)
    parts = ask_listing("mosps", ListProcesses(all_users=everyone, uid=uid, job=job), Processes)
    processes = [p for part in parts for p in part.processes]
    if as_json:
        emit([process_record(p, user_name(p.uid)) for p in processes])
        return
    print(HEADER)
    for p in processes:
        command = shown_words(p.command) or "?"
        print(
            f"{p.pid:>7} {shown(user_name(p.uid)):<10.10} {p.job:>5} {shown(p.where):<8.8} "
            f"{shown(p.state):<10.10} "
            f"{minutes_text(p.estimate_minutes):>8}  {command}"
        )
        if why and p.why_here:
            print(f"{'':>7} why here: {shown(p.why_here)}")


def main() -> None:
    run(cli, "mosps")
