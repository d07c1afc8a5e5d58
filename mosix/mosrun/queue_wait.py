"""A queued mosrun (-q / -Q): wait for the queue's go, shown as ``mosqueue``.

mosrun re-executes itself as ``mosqueue -m mosix.mosrun.mosqueue ARGS`` so that
ps shows the job as queued (the manual's rule).  It then holds a connection
to the agent until it is told to run (Go) or not (Abort).  If the agent goes
away without saying either (a crash), it reconnects, starting a new agent if
needed, and presents its ticket so it keeps its place in the queue.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import NoReturn

from mosix.agent_client import AgentUnavailable, connect
from mosix.arguments import MosrunArgs, QueueMode
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun.launch import drop_wrapper_group, holds_wrapper_group
from mosix.protocol import Abort, Enqueue, Go, Queued, Refused

PR_SET_NAME = 15
PYEXE_ENV = "PYTHONEXECUTABLE"
SAVED_PYEXE_ENV = "MOSIX_SAVED_PYTHONEXECUTABLE"
RETRY_FIRST, RETRY_MAX = 0.05, 2.0
MOSQUEUE_MODULE = "mosix.mosrun.mosqueue"  # what the re-executed mosrun runs


def become_mosqueue(argv: list[str], keep_environment: bool) -> NoReturn:
    """Re-execute as 'mosqueue' (argv[0]) so that ps shows the job as queued."""
    mode = "--mosenv" if keep_environment else "--mosrun"
    # Python finds its installation (a virtual environment's site-packages)
    # from argv[0]; "mosqueue" names none, so PYTHONEXECUTABLE says which
    # interpreter this is.  main() removes it again (restoring the caller's).
    env = dict(os.environ)
    if PYEXE_ENV in env:
        env[SAVED_PYEXE_ENV] = env[PYEXE_ENV]
    env[PYEXE_ENV] = sys.executable
    # -P: never import mosix from the current directory (a checkout) instead of the installed
    # one; -I with a set-group-ID wrapper's group kept: the caller's PYTHON* cannot steer it
    # (PYTHONEXECUTABLE, which even -I heeds, is set here to this interpreter)
    isolation = "-I" if holds_wrapper_group() else "-P"
    argv0 = ["mosqueue", isolation, "-m", MOSQUEUE_MODULE, mode, "--", *argv]
    os.execve(sys.executable, argv0, env)


def restore_environment() -> None:
    """Undo become_mosqueue's PYTHONEXECUTABLE: the program sees the caller's environment."""
    os.environ.pop(PYEXE_ENV, None)
    saved = os.environ.pop(SAVED_PYEXE_ENV, None)
    if saved is not None:
        os.environ[PYEXE_ENV] = saved


def name_process(name: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def die_aborted(reason: str) -> NoReturn:
    sys.stderr.write(f"mosrun: {reason}: the queued job is killed\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise SystemExit(EXIT_USAGE)  # not reached


def wait_turn(args: MosrunArgs, movable: bool = False) -> int:
    """Block until the queue lets ``args`` run; returns to run it, with the node the
    partition's queue chose for it (0: this one).  ``movable``: it may start elsewhere."""
    assert args.queue is not None
    request = Enqueue(
        pid=os.getpid(),
        job=args.job_id or 0,
        priority=args.queue.priority,
        mode=args.queue.mode.value,
        memory_mb=args.memory_mb or 0,
        parallel=args.parallel or 1,
        command=[os.fsencode(word) for word in args.program],
        movable=movable,
    )
    ticket = 0
    delay = RETRY_FIRST
    while True:
        try:
            client = connect(autostart=True)
        except AgentUnavailable as e:
            drop_wrapper_group()
            if ticket == 0:  # never queued: the queue is not there
                if args.queue.mode is QueueMode.RUN_ON_ABORT:
                    return 0
                raise Failure(f"-q: cannot queue the job: {e.message}", EXIT_USAGE) from None
            time.sleep(delay)  # the agent is restarting: retry, keeping the ticket
            delay = min(delay * 2, RETRY_MAX)
            continue
        # -g: the connection was made with the wrapper's group (the agent's gate looks at
        # it); a queued mosrun waits without it, and comes back with its ticket
        drop_wrapper_group()
        with client:
            try:
                client.send(Enqueue(**{**vars(request), "ticket": ticket}))
                while True:
                    msg = client.receive(timeout=None)
                    match msg:
                        case None:
                            break  # lost the agent: reconnect and keep our place
                        case Queued():
                            ticket, delay = msg.ticket, RETRY_FIRST
                        case Go(node=node):
                            return node
                        case Abort():
                            die_aborted(msg.reason)
                        case Refused():
                            raise Failure(f"-q: {msg.error}", EXIT_USAGE)
            except AgentUnavailable:
                pass
