"""mosrun -S{maxjobs} commands-file[,failed-file]: run many command lines.

As the manual says: each line of commands-file runs as ``bash -c LINE`` under
mosrun with the given arguments; lines start in file order, at most maxjobs at
a time, and when one ends the next starts.  The exit status is the number of
lines that failed (exited non-zero or were killed by a signal), 255 if more.
The failed-file, if given, is created before any line runs and lists every
failed line as written, in file order, so it can be fed back as a commands-file.

How it runs: this module checks and opens both files (one-line error, status
125, nothing run), then becomes the runner (:mod:`mosix.mosrun.batches.runner`) by
:func:`mosix.mosrun.launch.run_program`, so the discipline and the settings that
children inherit (-e, -J, -m, ...) apply once, to the runner, and every line
inherits them by fork/exec.  The runner is one process that reads the file as
a stream (memory does not grow with the file) and spawns bash for each line;
there is no Python process per line.  Options that are not inherited by
children (placement, -C, -A, -N, ...) apply to the runner.

Decisions beyond the manual:

* Blank lines (only spaces and tabs) are not commands: they are skipped (and
  never counted as failures), but still numbered in messages.
* Lines are bytes: any encoding runs as written.  A line with a NUL byte (a
  binary file) or longer than one argument may be (128 KiB) is refused with
  its line number: no further line starts, the lines already running are
  waited for, and the refusal counts as one failed line.
* Each line's stdin is /dev/null (lines run concurrently; the commands-file
  may itself be stdin); stdout and stderr are mosrun's, as with ``xargs -P``.
* The failed-file is written as lines end, in file order (a bounded buffer
  holds failed lines that ended before an earlier line); each write goes
  straight to the kernel.  If writing it fails (a full disk), that is
  reported on one line and the lines go on running and starting: the
  failed-file is a record, the lines are the work.  The exit status stays
  the count of failures (which is then at least 1).
* Each line runs in its own process group; SIGINT, SIGTERM, SIGHUP and
  SIGQUIT to mosrun are relayed to every running line, no further line
  starts, the running ones are waited for, the failed-file is completed, and
  mosrun then ends by the same signal (so a calling shell sees it), after a
  one-line summary.  Ctrl-Z stops the lines with mosrun, and fg resumes them.
* With -q/-Q each line waits for its turn in the node agent's queue, at most
  10 waiting at once (:mod:`mosix.mosrun.batches.queue`).  mosrun makes sure an agent
  runs before it starts the runner (which, under the discipline, cannot start
  one).  With no agent to be had, -q is an error and -Q runs the lines without
  the queue, as the manual says of a stopped queue.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import NoReturn

from mosix.agent_client import AgentUnavailable, connect
from mosix.arguments import MosrunArgs, QueueMode
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun import launch
from mosix.mosrun.batches.runner import MODULE, RunnerArgs, encode


def open_commands(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise Failure(f"-S: {path}: cannot open: {e.strerror}", EXIT_USAGE) from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise Failure(f"-S: {path}: is a directory, not a commands-file", EXIT_USAGE)
    return fd


def create_failed(path: str, commands_fd: int) -> int:
    try:
        st = os.stat(path)
    except OSError:
        pass
    else:
        mine = os.fstat(commands_fd)
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            raise Failure(
                f"-S: {path}: the failed-file is the commands-file (creating it would empty it)",
                EXIT_USAGE,
            )
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise Failure(
            f"-S: {path}: cannot create the failed-file: {e.strerror}", EXIT_USAGE
        ) from None


def run_commands(
    args: MosrunArgs, keep_environment: bool, register: Callable[[MosrunArgs], int]
) -> NoReturn:
    """Become the runner of ``args.commands``; ends as the run ends.  ``register``
    tells the node agent of the runner (the agent's gate: see runner_registration) and
    returns the agent's maximum of -X files at home."""
    spec = args.commands
    assert spec is not None
    program = (sys.executable, "-P", "-m", MODULE)
    # the queue applies to each line (in the runner), not to the runner as a whole
    as_runner = replace(args, commands=None, queue=None, args_from_zero=False, program=program)
    private_mb = register(runner_registration(as_runner))  # -X: home's maximum
    queue = args.queue
    agent_fd = None
    if queue is not None:
        try:
            client = connect(autostart=True)
        except AgentUnavailable as e:
            launch.drop_wrapper_group()
            if queue.mode is QueueMode.KILL_ON_ABORT:
                raise Failure(f"-q: cannot queue the lines: {e.message}", EXIT_USAGE) from None
            queue = None  # -Q: the queue is not there, so the lines bypass it
        else:
            if launch.holds_wrapper_group():  # the runner queues its lines over it
                agent_fd = client.sock.detach()
                os.set_inheritable(agent_fd, True)
            client.close()
    launch.drop_wrapper_group()  # -g: before the files are opened and the runner runs
    commands_fd = open_commands(spec.commands)
    failed_fd = None if spec.failed is None else create_failed(spec.failed, commands_fd)
    for fd in (commands_fd, failed_fd):
        if fd is not None:
            os.set_inheritable(fd, True)
    runner = RunnerArgs(
        prog="mosenv" if keep_environment else "mosrun",
        maxjobs=spec.maxjobs,
        commands_fd=commands_fd,
        commands_name=spec.commands,
        failed_fd=failed_fd,
        failed_name=spec.failed or "",
        queue=queue,
        agent_fd=agent_fd,
    )
    launch.run_program(
        replace(as_runner, program=(*program, *encode(runner))),
        keep_environment=keep_environment,
        private_mb=private_mb,
    )


def runner_registration(as_runner: MosrunArgs) -> MosrunArgs:
    """What the runner registers as: the settings its lines inherit, nothing of its own
    (its placement, -C, -A and -N are not acted on).  Registering is what an agent with
    a site group (``[site] mosrun_group``) lets in only through the site's wrapper, and
    its answer is the admission by which the agent adopts the lines from /proc."""
    return replace(
        as_runner,
        placement=MosrunArgs().placement,
        force_elsewhere=False,
        checkpoint_file=None,
        checkpoint_max=None,
        checkpoint_minutes=None,
        program=(),  # listed by its command line in /proc
    )
