"""native: start a program outside the MOSIX discipline from inside it.

A seccomp filter cannot be removed, so a process under the discipline asks
the node agent (which is outside it) to start the program as the same user,
with the caller's standard input, output and error passed over the control
socket (SCM_RIGHTS), its environment and current directory.  The caller
stays as the program's stand-in: signals it receives are relayed to the
program, and it ends the way the program ended (exit status or signal).
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import NoReturn

from mosix.agent_client import AgentRefused, connect
from mosix.exits import EXIT_CANNOT_RUN, EXIT_NOT_FOUND, EXIT_USAGE, Failure
from mosix.protocol import Exited, Refused, Started, StartNative
from mosix.start_contract import INHERIT_ENV

RELAYED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCONT,
)


def status_from_refusal(error: str) -> tuple[str, int]:
    """The agent appends ' [126]' or ' [127]' to a program that could not start."""
    for code in (EXIT_CANNOT_RUN, EXIT_NOT_FOUND):
        suffix = f" [{code}]"
        if error.endswith(suffix):
            return error[: -len(suffix)], code
    return error, EXIT_USAGE


def end_like(code: int) -> NoReturn:
    """Exit with ``code``, or die of signal ``-code``."""
    if code < 0:
        sig = -code
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    raise SystemExit(code if code >= 0 else 128 - code)


def run_via_agent(argv: list[str]) -> NoReturn:
    skipped = os.fsencode(INHERIT_ENV)
    env = {k: v for k, v in os.environb.items() if k != skipped}
    words = [os.fsencode(word) for word in argv]
    with connect(autostart=False) as client:
        try:
            directory = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise Failure(f"cannot open the current directory: {e.strerror}", EXIT_USAGE) from None
        try:
            client.send(StartNative(argv=words, env=env), fds=[0, 1, 2, directory])
        finally:
            os.close(directory)
        reply = client.receive()
        if isinstance(reply, Refused):
            message, code = status_from_refusal(reply.error)
            raise Failure(message, code)
        if not isinstance(reply, Started):
            raise AgentRefused("the node agent did not start the program", EXIT_USAGE)
        pid = reply.pid

        def relay(sig: int, frame: FrameType | None) -> None:
            del frame
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

        for sig in RELAYED:
            signal.signal(sig, relay)
        while True:
            done = client.receive(timeout=None)
            if isinstance(done, Exited):
                end_like(done.code)
            if done is None:
                raise Failure("lost the node agent while the native program ran", EXIT_USAGE)
