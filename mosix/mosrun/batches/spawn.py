"""Run lines of -S as processes: posix_spawn of bash, wait4, and signal relay.

This runs inside the -S runner, which already runs under the MOSIX
discipline, so every line inherits it by fork/exec.  It keeps to system calls
the discipline supports: posix_spawn (clone with CLONE_VM|CLONE_VFORK), wait4
(never waitid), kill, rt_sigprocmask; no threads and no epoll.

Each line runs as ``bash -c LINE`` with stdin from /dev/null (lines run
concurrently and cannot share an input; the commands-file itself may be
stdin) and stdout/stderr shared with mosrun, like ``xargs -P``.

Each line gets its own process group, and mosrun relays to every group the
signals that stop a run: SIGINT, SIGTERM, SIGHUP and SIGQUIT.  So Ctrl-C on a
terminal (which reaches only the foreground group: mosrun's) and a
``kill -TERM`` of mosrun reach every process of every running line exactly
once.  Ctrl-Z (SIGTSTP) stops the lines and then mosrun; SIGCONT resumes the
lines with it.  Signals that mosrun's caller ignored stay ignored, and are
not relayed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
HANDLED = (*STOP_SIGNALS, signal.SIGTSTP, signal.SIGCONT)
# Python ignores these at start-up; a line must get them with their default action.
DEFAULTED_IN_LINES = (signal.SIGPIPE, signal.SIGXFSZ)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def find_bash(env: Mapping[str, str]) -> str | None:
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        path = os.path.join(directory or ".", "bash")
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


class SpawnBackend:
    """Starts ``bash -c LINE`` in a new process group; waits for any line to end."""

    def __init__(self, bash: str, env: Mapping[bytes, bytes]) -> None:
        self.bash = bash
        self.env = dict(env)  # bytes: posix_spawn then encodes nothing per line
        self.stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.file_actions = [(os.POSIX_SPAWN_DUP2, self.stdin, 0)]
        self.groups: set[int] = set()  # process groups (= pids) of the running lines
        self._stopping: int | None = None
        self.handled: list[int] = []

    @property
    def stopping(self) -> int | None:
        return self._stopping

    def install_signal_handlers(self) -> None:
        # a caller's SIG_IGN for SIGCHLD would make the kernel reap the lines itself
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for sig in HANDLED:
            if signal.getsignal(sig) == signal.SIG_IGN:
                continue
            handler = {signal.SIGTSTP: self.on_tstp, signal.SIGCONT: self.on_cont}.get(
                sig, self.on_stop
            )
            signal.signal(sig, handler)
            self.handled.append(sig)

    def relay(self, sig: int) -> None:
        for group in list(self.groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)  # (fails when the line's processes have all gone)

    def on_stop(self, sig: int, frame: FrameType | None) -> None:
        del frame
        if self._stopping is None:
            self._stopping = sig
        self.relay(sig)

    def on_tstp(self, sig: int, frame: FrameType | None) -> None:
        del frame
        self.relay(sig)
        os.kill(os.getpid(), signal.SIGSTOP)

    def on_cont(self, sig: int, frame: FrameType | None) -> None:
        del frame
        self.relay(sig)

    def start(self, line: bytes) -> int:
        # Block the relayed signals until the new line is in self.groups, so that a
        # signal arriving meanwhile is relayed to it as well (the line itself gets
        # an empty mask).
        old = signal.pthread_sigmask(signal.SIG_BLOCK, self.handled)
        try:
            pid = os.posix_spawn(
                self.bash,
                [b"bash", b"-c", line],
                self.env,
                file_actions=self.file_actions,
                setpgroup=0,
                setsigmask=(),
                setsigdef=DEFAULTED_IN_LINES,
            )
            self.groups.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid

    def wait(self) -> tuple[int, bool]:
        pid, status = os.wait()
        self.groups.discard(pid)
        return pid, status == 0
