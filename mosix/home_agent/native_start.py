"""``native`` from under the discipline: the agent starts the program as the caller,
outside the discipline, with what the caller would have given a child of its own.

The caller sends its standard input, output and error and a descriptor of its
directory (SCM_RIGHTS) and its environment; its umask, resource limits, ids and
groups are read from the kernel (/proc, prlimit), never taken from the message.
The launcher (mosix-exec, mode n) runs as the caller from the start: it enters
the directory and sets umask and limits as the caller, so the agent follows no
path of the user's as root.  What cannot be the caller's: the program's parent
is the agent (a child of the caller would inherit its seccomp filter, and a
process's parent is its creator) and it is not in the caller's session, so its
terminal is the one on its descriptors but not its controlling terminal
(/dev/tty); the caller stays its stand-in (signals relayed, its end mirrored).
"""

from __future__ import annotations

import os
import resource
import stat

import trio

from mosix.discipline.launcher import Caller, spawn_native
from mosix.display import shown
from mosix.home_agent.connection import Connection, Peer
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.replies import reply
from mosix.protocol import Exited, Refused, Started, StartNative
from mosix.sysinfo import proc_info

LIMITS = 16  # RLIMIT_CPU .. RLIMIT_RTTIME
INFINITY = (1 << 64) - 1


async def start_native(conn: Connection, msg: StartNative) -> None:
    """Start ``msg.argv`` outside the discipline as the caller, with its fds 0-2."""
    fds = conn.take_fds()
    try:
        if len(fds) != 4:
            raise Refusal(
                "native: expected the caller's standard input, output, error and directory"
            )
        if not stat.S_ISDIR(os.fstat(fds[3]).st_mode):
            raise Refusal("native: the caller's directory descriptor is not a directory")
        if not msg.argv:
            raise Refusal("native: no program given")
        caller = caller_of(conn.peer, fds[3])
        try:
            proc = spawn_native(msg.argv, msg.env, fds[:3], caller)
        except OSError as e:
            error = f"{shown(msg.argv[0])}: {os.strerror(e.errno or 0)} [126]"
            await reply(conn, Refused(error=error))
            return
    finally:
        for fd in fds:
            os.close(fd)
    await reply(conn, Started(pid=proc.pid))
    pidfd = os.pidfd_open(proc.pid)
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    code = proc.wait()
    await reply(conn, Exited(code=code))


def caller_of(peer: Peer, directory: int) -> Caller:
    """The caller's umask, limits and groups, from the kernel."""
    try:
        limits = tuple(limit_of(peer.pid, r) for r in range(LIMITS))
        umask = int(proc_info.status_value(peer.pid, "Umask") or "", 8)
    except (OSError, ValueError):
        raise Refusal("native: cannot read the caller's umask and limits") from None
    return Caller(
        directory=directory,
        umask=umask,
        limits=limits,
        uid=peer.uid,
        gid=peer.gid,
        groups=tuple(groups_of(peer.pid)),
    )


def limit_of(pid: int, which: int) -> tuple[int, int, int]:
    soft, hard = resource.prlimit(pid, which)
    return which, unlimited(soft), unlimited(hard)


def unlimited(value: int) -> int:
    return INFINITY if value == resource.RLIM_INFINITY else value


def groups_of(pid: int) -> list[int]:
    """The caller's supplementary groups (none when its status cannot be read)."""
    try:
        return [int(g) for g in (proc_info.status_value(pid, "Groups") or "").split()]
    except ValueError:
        return []
