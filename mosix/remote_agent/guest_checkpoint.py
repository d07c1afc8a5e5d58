"""A checkpoint of a guest (the copy of another node's process), the target's side.

Home asks with MigrateCheckpoint (mosix.home_agent.away_checkpoint) on a
connection of its own.  As for leaving, mosix-remote is told to "leave" (the
call in flight finishes, no new one is taken, the direct channel is drained)
and, once "quiet", mosix-ckpt -a migrate streams the copy's image home on that
connection, holding the copy from its pause on.  Home reads the deputy's
descriptors while the copy is held, and closes the connection when its file
is written (one byte first) or given up: only then is the copy let go
("resume" to the capturer, "stay" to mosix-remote), so the two halves of the
image belong to the same moment.  Then, if the file was written, the action:
chkstop stops the copy (its deputy stops with it), chkexit kills it (its
deputy ends the same way).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket

import trio

from mosix.cluster.nodemap import Node
from mosix.cluster.stream import PeerStream
from mosix.native import capturer
from mosix.native.helper_process import close_process
from mosix.native_names import CkptLine, RemoteLine
from mosix.protocol import MigrateCheckpoint, RemoteEvent
from mosix.remote_agent.inbound import QUIET_TIMEOUT, Guest, Guests

log = logging.getLogger("mosixd")
HOME_DONE_TIMEOUT = 120.0  # for home to write its file after the image went
ACTIONS = {"none": 0, "stop": signal.SIGSTOP, "exit": signal.SIGKILL}


class GuestCheckpoints:
    def __init__(self, guests: Guests) -> None:
        self.guests = guests
        self.busy: set[str] = set()  # tokens of guests being captured

    async def checkpoint(self, stream: PeerStream, msg: MigrateCheckpoint, peer: Node) -> None:
        guest = self.guests.guests.get(msg.token)
        why = ""
        if guest is None or guest.home.number != peer.number or not guest.pid:
            why = "no such copy"
        elif msg.action not in ACTIONS:
            why = f"no such checkpoint action: {msg.action}"
        elif msg.token in self.busy:
            why = "a checkpoint of it is under way"
        if guest is None or why:
            await stream.send(RemoteEvent(token=msg.token, event="failed", error=why))
            await stream.aclose()
            return
        self.busy.add(msg.token)
        try:
            await self._checkpoint(guest, stream, msg)
        finally:
            self.busy.discard(msg.token)

    async def _checkpoint(self, guest: Guest, stream: PeerStream, msg: MigrateCheckpoint) -> None:
        guest.quiet = trio.Event()
        await self.guests.tell(guest, RemoteLine.LEAVE)
        try:
            with trio.fail_after(QUIET_TIMEOUT):
                await guest.quiet.wait()
        except trio.TooSlowError:
            await self.guests.tell(guest, RemoteLine.STAY)
            error = "a call at home does not end"
            await stream.send(RemoteEvent(token=msg.token, event="failed", error=error))
            await stream.aclose()
            return
        try:
            await stream.send(RemoteEvent(token=msg.token, event="sending"))
            fd = stream.detach_fd()
            try:
                written = await self._capture(guest, fd)
            finally:
                os.close(fd)
        finally:
            await self.guests.tell(guest, RemoteLine.STAY)
        if written and ACTIONS[msg.action] == signal.SIGKILL:
            # through mosix-remote, after "stay": a SIGKILL of ours could reach it
            # before "stay" does, and a copy that ends while leaving has "left"
            await self.guests.tell(guest, RemoteLine.KILL)
        elif written and ACTIONS[msg.action]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(guest.pid, ACTIONS[msg.action])
        log.info(
            "process %d of %s: checkpoint image sent home", guest.offer.pid, guest.home.label()
        )

    async def _capture(self, guest: Guest, fd: int) -> bool:
        """The copy's image on ``fd``; when home is done with it: whether home
        wrote its file."""
        proc = await capturer.start_migrate(fd, guest.pid)
        try:
            if not await capturer.captured(proc):
                why = await capturer.stderr_line(proc)
                if why:  # a refusal went home on the connection itself
                    log.warning("process %d: checkpoint capture: %s", guest.offer.pid, why)
            written = await home_done(fd)
            with contextlib.suppress(trio.BrokenResourceError):  # a capturer that gave up
                await capturer.order(proc, CkptLine.RESUME)
            await proc.wait()
            return written
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # a killed capturer lets the copy go
            await close_process(proc)


async def home_done(fd: int) -> bool:
    """Until home closes the connection: whether it said (a byte) its file was written."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as own:
        own.shutdown(socket.SHUT_WR)  # the image is complete
    said = False
    with trio.move_on_after(HOME_DONE_TIMEOUT):
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                    return False
                raise
            if not data:
                return said
            said = True
    return False
