"""Checkpoints of a process while it runs on another node, the home side.

The image has two halves: the copy's (memory, registers, signal state) on the
node it runs on, the deputy's (descriptors and their offsets, directory,
umask, limits) here.  MigrateCheckpoint asks that node to capture the copy
(mosix.remote_agent.guest_checkpoint): it holds the copy quiet, no forwarded
call in flight, and streams its image back on the same connection; here
``mosix-ckpt -o FILE -i FD DEPUTY`` (csrc/ckpt/ckpt_away.c) reads the deputy's part
and the stream and writes one ordinary image of the process to the next file
of its series (temporary name, fsync, rename), which ``mosrun -R`` and a
lost node's recovery restore like any other.  When it is done, this side
writes one byte (the file was written: the node may carry out chkstop or
chkexit) and closes the connection, which lets the copy go on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import trio

from mosix.cluster.stream import PeerUnavailable
from mosix.home_agent.checkpoints import CheckpointError
from mosix.home_agent.migration import HOME_TIMEOUT, Migrations
from mosix.native import capturer
from mosix.native_names import CkptExit
from mosix.protocol import MigrateCheckpoint, RemoteEvent


class AwayCheckpoints:
    """Captures of this node's processes that run elsewhere (checkpoints.Away)."""

    def __init__(self, migrations: Migrations) -> None:
        self.migrations = migrations

    def is_away(self, pid: int) -> bool:
        return pid in self.migrations.away

    async def capture(
        self, pid: int, to_file: capturer.ToFile, action: str
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the capturer ``to_file`` with the image of ``pid``'s copy (``-i``)."""
        m = self.migrations
        away = m.away.get(pid)
        if away is None:
            raise CheckpointError(f"process {pid} came home meanwhile")
        if pid in m.busy or away.returning or away.deputy is None:
            raise CheckpointError(f"process {pid} is migrating")
        m.take(pid)  # no migration while its halves are taken
        try:
            try:
                stream = await m.cluster.open(away.node)
                await stream.send(MigrateCheckpoint(token=away.token, action=action))
                with trio.fail_after(HOME_TIMEOUT):
                    answer = await stream.receive()
            except (PeerUnavailable, trio.TooSlowError) as e:
                raise CheckpointError(f"process {pid} on node {away.node}: {e}") from None
            if not isinstance(answer, RemoteEvent) or answer.event != "sending":
                await stream.aclose()
                why = getattr(answer, "error", "") or answer.OP
                raise CheckpointError(f"node {away.node} cannot capture process {pid}: {why}")
            fd = stream.detach_fd()
            try:
                result = await to_file.run(away_fd=fd)
                if result.returncode == CkptExit.OK:
                    with contextlib.suppress(OSError):
                        os.write(fd, b"\1")  # written: the node may stop or end the copy
                return result
            finally:
                os.close(fd)  # the copy goes on
        finally:
            m.release(pid)
