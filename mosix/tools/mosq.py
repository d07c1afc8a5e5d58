"""mosq: the MOSIX queue (list, run, abort, change priority, ...)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mosix.display import shown, shown_words
from mosix.protocol import Done, ListQueue, QueueAction, QueueListing
from mosix.tools.common import JsonFlag, app, ask, ask_listing, fail, job_id, run, user_name
from mosix.tools.json_output import emit, queue_record

cli = app(
    "mosq",
    "Inspect and control the MOSIX queue. With -j, IDs are job IDs. Frozen processes are "
    "listed after the queued jobs (STATE frozen); 'mosq run' continues them.",
)
JobFlag = Annotated[bool, typer.Option("-j", "--jobs", help="IDs are job IDs, not pids")]
Id = Annotated[
    str, typer.Argument(help="process ID (or with -j a job ID or ~/.jobids token)", metavar="ID")
]

HEADER = (
    f"{'POS':>5} {'PID':>7} {'USER':<10} {'JOB':>5} {'PRI':>5} {'Q':<1} {'MB':>6} {'P':>3} "
    f"{'STATE':<6}  COMMAND"
)


def show(all_users: bool, as_json: bool) -> None:
    parts = ask_listing("mosq", ListQueue(all_users=all_users), QueueListing)
    entries = [e for part in parts for e in part.entries]
    names = {uid: user_name(uid) for uid in {e.uid for e in entries}}
    if as_json:
        emit([queue_record(e, names[e.uid]) for e in entries])
        return
    partition = any(e.node for e in entries)  # the partition's queue: where each waits
    lines = [HEADER.replace("  COMMAND", " NODE  COMMAND") if partition else HEADER]
    for e in entries:
        name = shown(names[e.uid])
        node = f" {e.node:>4}" if partition else ""
        queued = e.state == "queued"  # else a frozen process: no place, priority or mode
        lines.append(
            f"{e.position if queued else '-':>5} {e.pid:>7} {name:<10.10} {e.job:>5} "
            f"{e.priority if queued else '-':>5} {shown(e.mode) or '-':<1} "
            f"{e.memory_mb or '-':>6} {e.parallel:>3} {shown(e.state):<6.6}{node}  "
            f"{shown_words(e.command)}"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def act(action: str, ident: str, jobs: bool, priority: int | None = None) -> None:
    if jobs:
        number = job_id("mosq", "-j", ident)
    elif ident.isdigit():
        number = int(ident)
    else:
        fail("mosq", f"{ident}: not a process ID (-j for a job)")
    ask("mosq", QueueAction(action=action, ident=number, by_job=jobs, priority=priority), Done)


@cli.command("list")
def list_queue(as_json: JsonFlag = False) -> None:
    """Your queued jobs, in the order they will run, then your frozen processes."""
    show(all_users=False, as_json=as_json)


@cli.command("listall")
def list_all(as_json: JsonFlag = False) -> None:
    """Every user's queued jobs and frozen processes (root)."""
    show(all_users=True, as_json=as_json)


@cli.command("count")
def count() -> None:
    """How many of your jobs are queued."""
    print(ask_listing("mosq", ListQueue(count_only=True), QueueListing)[0].total)


@cli.command("run")
def run_now(ident: Id, jobs: JobFlag = False) -> None:
    """Start a queued job now, bypassing the queue; continue a frozen process."""
    act("run", ident, jobs)


@cli.command("abort")
def abort(ident: Id, jobs: JobFlag = False) -> None:
    """Abort a queued job: -q jobs are killed, -Q jobs start running."""
    act("abort", ident, jobs)


@cli.command("cngpri")
def change_priority(
    priority: Annotated[int, typer.Argument(min=0, help="new priority (lower runs first)")],
    ident: Id,
    jobs: JobFlag = False,
) -> None:
    """Change a queued job's priority."""
    act("cngpri", ident, jobs, priority)


@cli.command("advance")
def advance(ident: Id, jobs: JobFlag = False) -> None:
    """Move a job ahead of the others of the same priority."""
    act("advance", ident, jobs)


@cli.command("retard")
def retard(ident: Id, jobs: JobFlag = False) -> None:
    """Move a job behind the others of the same priority."""
    act("retard", ident, jobs)


def main() -> None:
    run(cli, "mosq")
