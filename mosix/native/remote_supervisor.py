"""mosix-remote (csrc/remote/mosix_remote.c): the supervisor of a guest, started here only.

It restores the copy from the image descriptor (through the launcher and the
restorer), serves its forwarded calls, reports one line per event on its stdout
and takes orders on its stdin, both ``RemoteLine`` (mosix.native_names, shared
with the C side).  Its own failures come as a "failed REASON" line, not as an
exit status: :func:`report` splits a line into its verb and the rest.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
from dataclasses import dataclass

import trio

from mosix.native import native_path
from mosix.native_names import Program, RemoteLine, order_line

PROGRAM = Program.REMOTE
LAUNCHER = Program.LAUNCHER
RESTORER = Program.RESTORER


@dataclass(frozen=True)
class Supervise:
    """A copy to restore and serve: its descriptors, its mode and its pid at home."""

    chan_fd: int
    img_fd: int
    mode: str
    home_pid: int
    direct_fds: tuple[int, ...] = ()  # the direct channels (none: no fast path)
    time_here: bool = False
    uid: int | None = None  # the process's user (None: this agent's own)
    private_dirs: tuple[str, ...] = ()  # -X: one tmpfs for all, in the copy's mount namespace
    private_home_mb: int = 0  # -X: the tmpfs's size (home's maximum; 0: the default)
    private_away_mb: int = 0  # -X: beyond this, the process comes home (0: no watch)

    def fds(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self.img_fd, self.chan_fd, *self.direct_fds) if fd >= 0)

    def argv(self) -> list[str]:
        argv = [native_path(PROGRAM), "-c", str(self.chan_fd)]
        for fd in self.direct_fds:
            argv += ["-d", str(fd)]
        argv += ["-i", str(self.img_fd), "-m", self.mode, "-p", str(self.home_pid)]
        argv += ["-e", native_path(LAUNCHER), "-r", native_path(RESTORER)]
        for directory in self.private_dirs:
            argv += ["-X", directory]
        if self.private_dirs and self.private_home_mb > 0:
            argv += ["-L", str(self.private_home_mb)]
        if self.private_dirs and self.private_away_mb > 0:
            argv += ["-W", str(self.private_away_mb)]
        return [*argv, "-t"] if self.time_here else argv

    async def start(self) -> trio.Process:
        """The supervisor, in a session of its own, stdin and stdout ours (end it with
        mosix.native.helper_process.close_process); the descriptors stay open here."""
        return await trio.lowlevel.open_process(
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=self.fds(),
            start_new_session=True,
            **run_as(self.uid),
        )


def identity_refusal(uid: int) -> str | None:
    """Why this node cannot run a process of user ``uid`` (None: it can)."""
    if uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        return f"this node's agent runs as uid {os.geteuid()}: it takes only that user's processes"
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return f"uid {uid} has no account on this node"
    return None


def run_as(uid: int | None) -> dict[str, object]:
    """open_process's options that start the supervisor, and so the copy it restores, as
    user ``uid`` with that user's group and groups on this node (none: as this agent)."""
    if uid is None or uid == os.geteuid():
        return {}
    entry = pwd.getpwuid(uid)
    return {
        "user": uid,
        "group": entry.pw_gid,
        "extra_groups": os.getgrouplist(entry.pw_name, entry.pw_gid),
    }


async def order(proc: trio.Process, line: RemoteLine) -> None:
    """Tell the supervisor ``line``; one that is gone no longer listens."""
    if proc.stdin is None:
        return
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await proc.stdin.send_all(order_line(line))


async def answer(proc: trio.Process, result: int) -> None:
    """Tell the supervisor home's answer to the copy's checkpoint call (0 or -errno)."""
    if proc.stdin is None:
        return
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await proc.stdin.send_all(f"{RemoteLine.ANSWER} {result}\n".encode())


def checkpoint_call(rest: str) -> tuple[int, int, bytes] | None:
    """A "checkpoint OP ARG" line's op, number and file name (None: malformed)."""
    op_text, _, arg = rest.partition(" ")
    if not op_text.isdigit():
        return None
    op = int(op_text)
    try:
        if op == 2:  # the file name, in hex
            return op, 0, bytes.fromhex(arg)
        return op, int(arg), b""
    except ValueError:
        return None


def report(raw: bytes) -> tuple[str, str]:
    """A line of the supervisor (without its newline): its verb and the rest."""
    word, _, rest = raw.decode(errors="replace").partition(" ")
    return word, rest
