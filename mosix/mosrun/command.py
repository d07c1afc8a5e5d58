"""mosrun and mosenv: a parsed command line turned into an action.

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

import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from mosix import start_contract
from mosix.arguments import (
    HelpRequested,
    MosrunArgs,
    OnNode,
    UsageError,
    WhereParent,
    home_jobids_resolver,
    parse,
    synopsis,
)
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun import launch

NOT_YET: dict[str, str] = {}


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
    if args.private_dirs and args.batch is not None:
        return "-X: not available with -E/-M yet"
    return None


def register(args: MosrunArgs) -> int:
    """Tell the node agent (starting the embedded one if needed) about this program;
    the agent's maximum of its -X files at home in MiB (0: none, or no agent).

    With a placement on another node, the agent may ask the program to wait
    at a gate (a FIFO the preload shim opens) until it has been moved there.
    """
    from mosix.agent_client import AGENT_SOCKET_ENV, register_program
    from mosix.arguments import inherit, inherited_words
    from mosix.protocol import Register

    os.environ.pop(start_contract.ADMISSION_ENV, None)  # an outer program's, not this one's
    effective = inherit(start_contract.outer_settings(os.environ), args)
    placement = args.placement.option() or ""
    gate = start_contract.make_gate() if placement and placement != "-h" else ""
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
        start_contract.remove_gate(gate)
        problem = start_contract.placement_problem(args)
        if problem is not None:
            raise Failure(problem, EXIT_USAGE)
        return 0
    socket_path, answer = registered
    if answer.admission:  # the site's agent adopts the program's descendants by it
        os.environ[start_contract.ADMISSION_ENV] = answer.admission
    if answer.count == 1:
        os.environ[start_contract.GATE_ENV] = gate
    else:
        start_contract.remove_gate(gate)
    if socket_path is not None:
        # the guard passes the program's own checkpoint requests to this agent
        os.environ[AGENT_SOCKET_ENV] = socket_path
    return answer.private_mb


def queue_turn(
    args: MosrunArgs, argv: Sequence[str], keep_environment: bool, queued: bool, may_move: bool
) -> MosrunArgs:
    """-q/-Q: wait as ``mosqueue`` (re-executing as it first) until the queue lets ``args``
    run.  Without a placement of its own, the job starts where the partition's queue
    found room for it (placed there as by ``-{n}``)."""
    from mosix.mosrun import queue_wait

    if not queued:
        queue_wait.become_mosqueue(list(argv), keep_environment)
    movable = may_move and isinstance(args.placement, WhereParent)
    node = queue_wait.wait_turn(args, movable=movable)
    if node and movable:
        return dataclasses.replace(args, placement=OnNode(node))
    return args


def queue_wait_here(
    args: MosrunArgs, argv: Sequence[str], keep_environment: bool, queued: bool
) -> None:
    """-R with -q/-Q: a recovered program waits for its turn and runs on this node."""
    queue_turn(args, argv, keep_environment, queued, may_move=False)


def run_mosrun(
    prog: str, argv: Sequence[str], keep_environment: bool, queued: bool = False
) -> NoReturn:
    try:
        args = parse(argv, jobids=home_jobids_resolver())
        if args.admin and not queued:  # the wrapper's group is kept for the agent's gate
            launch.check_wrapper_start()
        if not args.admin or args.inspect is not None:
            launch.drop_wrapper_group()  # only -g keeps it; -I asks the agent for nothing
        problem = not_available(args)
        if problem is not None:
            fail(prog, problem, EXIT_USAGE)
        if args.inspect is not None:
            from mosix.mosrun.checkpoint_files import inspect

            inspect(args.inspect)
        if args.recover is not None:
            from mosix.mosrun.checkpoint_files import recover

            recover(args, lambda a: queue_wait_here(a, argv, keep_environment, queued))
        if args.commands is not None:
            from mosix.mosrun.batches import commands

            commands.run_commands(args, keep_environment=keep_environment, register=register)
        if args.queue is not None:  # the whole mosrun command waits, a batch job's too
            args = queue_turn(args, argv, keep_environment, queued, may_move=args.batch is None)
        if args.batch is not None:
            from mosix.mosrun import batch_client

            args = batch_client.run_batch(args)  # returns only to run -M on the only node
        private_mb = register(args)
        launch.run_program(args, keep_environment=keep_environment, private_mb=private_mb)
    except HelpRequested:
        sys.stdout.write(synopsis(prog))
        sys.stdout.flush()
        raise SystemExit(0) from None
    except UsageError as e:
        fail(prog, str(e), EXIT_USAGE)
    except Failure as e:
        fail(prog, e.message, e.status)
    except KeyboardInterrupt:
        fail(prog, "interrupted", EXIT_USAGE)
