"""The -S runner: one process, under the MOSIX discipline, that spawns every line.

:func:`mosix.mosrun.batches.commands.run_commands` opens the files, then becomes this runner
through :func:`mosix.mosrun.launch.run_program`, so the discipline is applied once
and every line inherits it (and mosrun's inherited settings, through
``MOSIX_INHERIT``) by fork/exec.  Its arguments, after ``-m
mosix.mosrun.batches.runner``, come from :func:`encode`, never from a user.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from mosix.arguments import QueueMode, QueueRequest
from mosix.display import shown
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun.batches.failed import FailedLog
from mosix.mosrun.batches.queue import TurnQueue, agent_queue
from mosix.mosrun.batches.reader import command_lines
from mosix.mosrun.batches.scheduler import Outcome, Scheduler
from mosix.mosrun.batches.spawn import SpawnBackend, find_bash

MODULE = "mosix.mosrun.batches.runner"


@dataclass(frozen=True)
class RunnerArgs:
    prog: str  # name for messages: mosrun or mosenv
    maxjobs: int
    commands_fd: int
    commands_name: str
    failed_fd: int | None
    failed_name: str
    queue: QueueRequest | None
    agent_fd: int | None = None  # -g: the connection to the agent made with the wrapper's group


def encode(r: RunnerArgs) -> list[str]:
    queue = "-"
    if r.queue is not None:
        queue = r.queue.mode.value + ("" if r.queue.priority is None else str(r.queue.priority))
    failed_fd = "-" if r.failed_fd is None else str(r.failed_fd)
    return [
        r.prog,
        str(r.maxjobs),
        str(r.commands_fd),
        r.commands_name,
        failed_fd,
        r.failed_name,
        queue,
        "-" if r.agent_fd is None else str(r.agent_fd),
    ]


def decode(words: Sequence[str]) -> RunnerArgs:
    prog, maxjobs, commands_fd, commands_name, failed_fd, failed_name, queue, agent_fd = words
    request = None
    if queue != "-":
        request = QueueRequest(QueueMode(queue[0]), int(queue[1:]) if queue[1:] else None)
    return RunnerArgs(
        prog=prog,
        maxjobs=int(maxjobs),
        commands_fd=int(commands_fd),
        commands_name=commands_name,
        failed_fd=None if failed_fd == "-" else int(failed_fd),
        failed_name=failed_name,
        queue=request,
        agent_fd=None if agent_fd == "-" else int(agent_fd),
    )


class Reporter:
    def __init__(self, prog: str) -> None:
        self.prog = prog

    def __call__(self, message: str) -> None:
        with contextlib.suppress(OSError):  # stderr gone: the exit status still tells
            os.write(2, f"{self.prog}: {shown(message)}\n".encode())


def run(r: RunnerArgs) -> Outcome:
    report = Reporter(r.prog)
    for fd in (r.commands_fd, r.failed_fd):
        if fd is not None:
            os.set_inheritable(fd, False)  # the lines must not get them
    bash = find_bash(os.environ)
    if bash is None:
        raise Failure("-S: bash: not found in PATH (command lines are run by bash)", EXIT_USAGE)
    queue: TurnQueue | None = None if r.queue is None else agent_queue(r.queue, r.agent_fd)
    backend = SpawnBackend(bash, os.environb)
    backend.install_signal_handlers()
    scheduler = Scheduler(
        lines=command_lines(r.commands_fd, r.commands_name),
        maxjobs=r.maxjobs,
        backend=backend,
        log=FailedLog(r.failed_fd, r.failed_name, report),
        report=report,
        queue=queue,
    )
    return scheduler.run()


def die_by(sig: int) -> NoReturn:
    """End as killed by ``sig``, so that a calling shell sees the interruption."""
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def main(argv: Sequence[str]) -> NoReturn:
    try:
        r = decode(argv)
    except ValueError:
        sys.stderr.write(f"{MODULE}: internal: bad arguments (it is started by mosrun -S)\n")
        raise SystemExit(EXIT_USAGE) from None
    try:
        outcome = run(r)
    except Failure as e:
        Reporter(r.prog)(e.message)
        raise SystemExit(e.status) from None
    if outcome.stopped_by is not None:
        name = signal.Signals(outcome.stopped_by).name
        Reporter(r.prog)(
            f"-S: stopped by {name} after starting {outcome.ran} lines, "
            f"{outcome.failed} of them failed"
        )
        die_by(outcome.stopped_by)
    raise SystemExit(outcome.status())


if __name__ == "__main__":
    main(sys.argv[1:])
