"""``native`` from under the discipline: the agent starts the program as the caller,
outside the discipline, with the caller's standard descriptors."""

from __future__ import annotations

import errno
import os
import subprocess

import trio

from mosix.display import shown
from mosix.home_agent.connection import Connection
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.replies import reply
from mosix.protocol import Exited, Refused, Started, StartNative
from mosix.sysinfo import proc_info


async def start_native(conn: Connection, msg: StartNative) -> None:
    """Start ``msg.argv`` outside the discipline as the caller, with its fds 0-2."""
    fds = conn.take_fds()
    peer = conn.peer
    try:
        if len(fds) != 3:
            raise Refusal("native: expected the caller's standard input, output and error")
        if not msg.argv:
            raise Refusal("native: no program given")
        try:
            proc = subprocess.Popen(
                msg.argv,
                stdin=fds[0],
                stdout=fds[1],
                stderr=fds[2],
                cwd=msg.cwd,
                env=msg.env,
                user=peer.uid,
                group=peer.gid,
                extra_groups=groups_of(peer.pid),
                restore_signals=True,
                close_fds=True,
            )
        except OSError as e:
            code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            await reply(
                conn,
                Refused(error=f"{shown(msg.argv[0])}: {os.strerror(e.errno or 0)} [{code}]"),
            )
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


def groups_of(pid: int) -> list[int]:
    """The caller's supplementary groups (none when its status cannot be read)."""
    try:
        return [int(g) for g in (proc_info.status_value(pid, "Groups") or "").split()]
    except ValueError:
        return []
