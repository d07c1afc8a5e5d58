"""Entry points of ``mosrun``, ``mosenv`` and ``native``.

mosrun cannot use a general option parser (MOSIX attaches arguments to the
option letter and options end at the program name), so the grammar lives in
:mod:`mosix.arguments`.  This module only turns a parsed command line into an
action and keeps start-up lean: nothing heavy is imported on the path that
ends in running the program.

Exit statuses of mosrun's own failures follow ``env`` and ``timeout``:
125 for a bad command line or an internal failure, 126 when the program was
found but could not be run, 127 when it was not found.  Otherwise the status
is the program's own, because mosrun becomes the program (exec in place).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from mosix.arguments import MosrunArgs, UsageError, home_jobids_resolver, parse
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun import launch

NOT_YET = {
    "batch": "-E/-M (batch jobs on other nodes) are not available yet",
}


def fail(prog: str, message: str, status: int) -> NoReturn:
    """One line on stderr and exit; a user's words in ``message`` are shown escaped."""
    from mosix.display import shown

    sys.stderr.write(f"{prog}: {shown(message)}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def not_available(args: MosrunArgs) -> str | None:
    """What this build cannot do yet for ``args`` (None: it can run it)."""
    for name, message in NOT_YET.items():
        if getattr(args, name) is not None:
            return message
    return None


def register(args: MosrunArgs) -> None:
    """Tell the node agent (starting the embedded one if needed) about this program.

    With a placement on another node, the agent may ask the program to wait
    at a gate (a FIFO the preload shim opens) until it has been moved there.
    """
    from mosix.agent_client import AGENT_SOCKET_ENV, register_program
    from mosix.arguments import inherit, inherited_words
    from mosix.protocol import Register

    effective = inherit(launch.outer_settings(os.environ), args)
    placement = args.placement.option() or ""
    gate = launch.make_gate() if placement and placement != "-h" else ""
    registered = register_program(
        Register(
            pid=os.getpid(),
            job=effective.job_id or 0,
            estimate_minutes=args.duration_minutes,
            memory_mb=effective.memory_mb,
            flags=inherited_words(effective),
            command=[os.fsencode(word) for word in args.program],
            checkpoint_file=os.fsencode(args.checkpoint_file or ""),
            checkpoint_limit=args.checkpoint_max or 0,
            checkpoint_interval=args.checkpoint_minutes or 0,
            placement=placement,
            force_elsewhere=args.force_elsewhere,
            gate=gate,
        )
    )
    if registered is None:  # no agent: this node only
        launch.remove_gate(gate)
        problem = launch.placement_problem(args)
        if problem is not None:
            raise Failure(problem, EXIT_USAGE)
        return
    socket_path, answer = registered
    if answer.count == 1:
        os.environ[launch.GATE_ENV] = gate
    else:
        launch.remove_gate(gate)
    if socket_path is not None:
        # the guard passes the program's own checkpoint requests to this agent
        os.environ[AGENT_SOCKET_ENV] = socket_path


def inspect(path: str) -> NoReturn:
    from mosix.ckpt.image import ImageError, read_head_from
    from mosix.ckpt.inspect import listing

    try:
        head = read_head_from(path)
    except ImageError as e:
        raise Failure(f"-I{path}: {e}", EXIT_USAGE) from None
    sys.stdout.write("\n".join(listing(path, head)) + "\n")
    sys.stdout.flush()
    raise SystemExit(0)


def recover(args: MosrunArgs) -> NoReturn:
    from mosix.ckpt.recover import recover as become_recovered

    become_recovered(args, dict(os.environ))


def run_mosrun(
    prog: str, argv: Sequence[str], keep_environment: bool, queued: bool = False
) -> NoReturn:
    try:
        args = parse(argv, jobids=home_jobids_resolver())
        problem = not_available(args)
        if problem is not None:
            fail(prog, problem, EXIT_USAGE)
        if args.inspect is not None:
            inspect(args.inspect)
        if args.recover is not None:
            recover(args)
        if args.commands is not None:
            from mosix.mosrun.batches import commands

            commands.run_commands(args, keep_environment=keep_environment)
        if args.queue is not None:
            from mosix.mosrun import queue_wait

            if not queued:
                queue_wait.become_mosqueue(list(argv), keep_environment)
            queue_wait.wait_turn(args)
        register(args)
        launch.run_program(args, keep_environment=keep_environment)
    except UsageError as e:
        fail(prog, str(e), EXIT_USAGE)
    except Failure as e:
        fail(prog, e.message, e.status)
    except KeyboardInterrupt:
        fail(prog, "interrupted", EXIT_USAGE)


def mosrun_main() -> NoReturn:
    run_mosrun("mosrun", sys.argv[1:], keep_environment=False)


def mosenv_main() -> NoReturn:
    run_mosrun("mosenv", sys.argv[1:], keep_environment=True)


def native_main() -> NoReturn:
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        fail("native", "no program given", EXIT_USAGE)
    if argv[0].startswith("-"):
        fail("native", f"{argv[0]}: unknown option (native takes no options)", EXIT_USAGE)
    try:
        if launch.under_discipline():
            from mosix.mosrun.native_client import run_via_agent

            run_via_agent(argv)
        launch.run_native(argv)
    except Failure as e:
        fail("native", e.message, e.status)
