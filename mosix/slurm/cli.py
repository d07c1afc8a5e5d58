"""mosix-slurm: MOSIX inside a Slurm job (see docs/SLURM.md).

mosix-slurm run [--lost-after S] [--signal SIG] CMD...   the job's cluster while CMD runs
mosix-slurm mosrun NAME [-o FILE] [MOSRUN ARGS...]        a program of the job: start or resume
mosix-slurm hostnames [LIST]                              a host list expanded (as scontrol does)
mosix-slurm agent                                         one node's agent (run by srun for `run`)
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer

from mosix.exits import EXIT_USAGE, Failure
from mosix.slurm.hostlist import HostListError, expand
from mosix.tools.common import app, fail, run

TOOL = "mosix-slurm"
cli = app(TOOL, "MOSIX inside a Slurm job: the allocation as the job's cluster.")
PASS_ON = {"allow_extra_args": True, "ignore_unknown_options": True}


def failed(e: Failure) -> None:
    fail(TOOL, e.message, e.status)


@cli.command("run", context_settings=PASS_ON)
def run_command(
    ctx: typer.Context,
    lost_after: Annotated[
        float,
        typer.Option("--lost-after", help="seconds before a silent node counts as lost"),
    ] = 30.0,
    warning: Annotated[
        str, typer.Option("--signal", help="Slurm's warning signal (sbatch --signal=B:SIG@S)")
    ] = "USR1",
) -> None:
    """Start the job's agents on every allocated node, run CMD, end them."""
    from mosix.slurm import session

    if not ctx.args:
        fail(TOOL, "run: give the command to run")
    if lost_after < 1:
        fail(TOOL, f"--lost-after {lost_after}: want 1 second or more")
    name = warning.upper().removeprefix("SIG")
    sig = getattr(signal.Signals, f"SIG{name}", None) if name.isalnum() else None
    if sig is None or sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        fail(TOOL, f"--signal {warning}: not a signal to catch")
    try:
        session.run(ctx.args, lost_after, sig)
    except Failure as e:
        failed(e)


@cli.command("mosrun", context_settings=PASS_ON)
def mosrun_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the program's name in the job", show_default=False)],
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="its stdout (truncated when it starts)")
    ] = None,
) -> None:
    """Run a program of the job under mosrun, or resume it after a requeue."""
    from mosix.slurm import program

    if not ctx.args:
        fail(TOOL, f"mosrun {name}: give the program (and mosrun's options)")
    try:
        program.run(name, output, list(ctx.args))
    except Failure as e:
        failed(e)


@cli.command("hostnames")
def hostnames(
    node_list: Annotated[str, typer.Argument(help="default: $SLURM_JOB_NODELIST")] = "",
) -> None:
    """Print each host of a Slurm host list, one a line."""
    import os

    text = node_list or os.environ.get("SLURM_JOB_NODELIST", "")
    if not text:
        fail(TOOL, "hostnames: give a host list (or run inside a job)")
    try:
        typer.echo("\n".join(expand(text)))
    except HostListError as e:
        fail(TOOL, f"hostnames: {e}", EXIT_USAGE)


@cli.command("agent")
def agent() -> None:
    """This node's job agent (srun runs it, one task per node)."""
    from mosix.slurm import agents
    from mosix.slurm.job import current_job

    try:
        agents.become_agent(current_job())
    except Failure as e:
        failed(e)


def main() -> None:
    run(cli, TOOL)


if __name__ == "__main__":
    sys.exit(main())
