"""One client connection of the agent: framed messages, peer identity, passed fds."""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import trio

from mosix.protocol import (
    HEADER,
    Message,
    ProtocolError,
    decode_message,
    encode_message,
    frame_length,
)

FDS_KEPT = 16  # descriptors a client may have passed and not yet had taken
FD_SPACE = socket.CMSG_SPACE(FDS_KEPT * array.array("i").itemsize)
FRAME_TIMEOUT = 10.0  # a started frame must arrive whole within this time (default)


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def peer_of(sock: trio.socket.SocketType) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


class Connection:
    """``room(size)`` says whether a frame of ``size`` bytes may be received now,
    ``done(size)`` gives that room back (a user's share of the agent's memory)."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        peer: Peer | None = None,
        frame_seconds: float = FRAME_TIMEOUT,
        room: Callable[[int], bool] = lambda size: True,
        done: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.sock = sock
        self.peer = peer if peer is not None else peer_of(sock)
        self.frame_seconds = frame_seconds
        self.room, self.done = room, done
        self.buffer = bytearray()
        self.fds: list[int] = []
        self.send_lock = trio.Lock()

    async def _fill(self, size: int) -> bool:
        """Read until ``size`` bytes are buffered; False at a clean end of stream."""
        while len(self.buffer) < size:
            data, ancdata, _flags, _addr = await self.sock.recvmsg(65536, FD_SPACE)
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                    self.fds.extend(fds)
            if len(self.fds) > FDS_KEPT:
                for fd in self.take_fds():
                    os.close(fd)
                raise ProtocolError(f"more than {FDS_KEPT} descriptors passed")
            if not data:
                if self.buffer:
                    raise ProtocolError("connection closed in the middle of a frame")
                return False
            self.buffer += data
        return True

    async def receive(self, deadline: float | None = None) -> Message | None:
        """The next message; None when the peer closed the connection.

        A frame must arrive whole within ``frame_seconds`` of its first byte
        and, with ``deadline`` (trio time), by then; trio.TooSlowError if not.
        """
        waiting = trio.fail_at(deadline) if deadline is not None else contextlib.nullcontext()
        with waiting:
            if not await self._fill(1):
                return None
            with trio.fail_after(self.frame_seconds):
                await self._fill(HEADER.size)
                length = frame_length(bytes(self.buffer[: HEADER.size]))
                if not self.room(length):
                    raise ProtocolError("too much data on the way from this user: try again later")
                try:
                    if not await self._fill(HEADER.size + length):
                        raise ProtocolError("connection closed in the middle of a frame")
                finally:
                    self.done(length)
        payload = bytes(self.buffer[HEADER.size : HEADER.size + length])
        del self.buffer[: HEADER.size + length]
        return decode_message(payload)

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds

    async def send(self, msg: Message) -> None:
        data = encode_message(msg)
        async with self.send_lock:
            view = memoryview(data)
            while view:
                sent = await self.sock.send(view)
                view = view[sent:]

    async def send_with_fds(self, msg: Message, fds: list[int]) -> None:
        """``msg`` with descriptors attached (SCM_RIGHTS) to its first byte."""
        data = encode_message(msg)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        async with self.send_lock:
            sent = await self.sock.sendmsg([data], rights)
            view = memoryview(data)[sent:]
            while view:
                n = await self.sock.send(view)
                view = view[n:]

    def close(self) -> None:
        for fd in self.take_fds():
            os.close(fd)
        self.sock.close()
