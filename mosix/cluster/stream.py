"""One TCP connection between two agents: framed messages of mosix.protocol.

Frames are read exactly (never past the end of the current message), so the
raw socket can be handed to a C program at any message boundary
(:meth:`PeerStream.detach_fd`) without losing bytes already received.

Once the handshake is done (:meth:`PeerStream.seal`), every frame carries a
MAC (mosix.cluster.frame_mac); a frame that fails it is logged and ends
the connection (:class:`FrameRejected`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import trio

from mosix.cluster.frame_mac import TAG_BYTES, ForgedFrame, FrameMac, sealed_length
from mosix.cluster.nodemap import Node
from mosix.protocol import (
    HEADER,
    MAX_FRAME,
    Message,
    ProtocolError,
    decode_message,
    encode_message,
    frame_length,
)

log = logging.getLogger("mosixd")


class PeerUnavailable(Exception):
    """A node that cannot be reached, refused us, or went away (one line)."""


class PeerClosed(PeerUnavailable):
    """The peer ended the connection between two messages."""


class FrameRejected(PeerUnavailable):
    """A frame failed its MAC; the connection is ended."""


class MalformedFrame(PeerUnavailable, ProtocolError):
    """An authenticated peer sent a message that does not decode (or is too
    long); the connection is ended.  Both a ProtocolError and a
    PeerUnavailable, so every receiver that handles a lost peer handles it."""


class PeerStream:
    """Messages to and from one peer agent over a trio.SocketStream.

    ``peer`` is the node at the other end once the connection is
    authenticated; ``address`` its (ip, port).  Not for concurrent receivers;
    concurrent senders are serialised.
    """

    def __init__(self, stream: trio.SocketStream, peer: Node | None = None) -> None:
        self.stream = stream
        self.peer = peer
        self.address: tuple[str, int] = stream.socket.getpeername()[:2]
        self._send_lock = trio.Lock()
        self._detached = False
        self._sending: FrameMac | None = None
        self._receiving: FrameMac | None = None

    def seal(self, send_key: bytes, receive_key: bytes) -> None:
        """From now on every frame both ways carries a MAC with these keys."""
        self._sending, self._receiving = FrameMac(send_key), FrameMac(receive_key)

    def describe(self) -> str:
        """The other end for messages: 'node 2 (10.77.0.2)' or '10.77.0.9:41234'."""
        if self.peer is not None:
            return self.peer.label()
        return f"{self.address[0]}:{self.address[1]}"

    def frame(self, msg: Message) -> bytes:
        """``msg`` as the next frame on the wire (sealed once the stream is);
        only for the sender holding the send lock, or for tests."""
        data = encode_message(msg)
        return data if self._sending is None else self._sending.seal(data)

    async def send(self, msg: Message) -> None:
        try:
            async with self._send_lock:
                await self.stream.send_all(self.frame(msg))
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise PeerUnavailable(f"{self.describe()}: lost the connection ({reason(e)})") from None

    async def _exactly(self, size: int, started: bool) -> bytes:
        """``size`` bytes; PeerClosed at a clean end before the first byte of a message."""
        data = bytearray()
        while len(data) < size:
            try:
                chunk = await self.stream.receive_some(size - len(data))
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise PeerUnavailable(
                    f"{self.describe()}: lost the connection ({reason(e)})"
                ) from None
            if not chunk:
                if data or started:
                    raise PeerUnavailable(
                        f"{self.describe()}: connection closed in the middle of a message"
                    )
                raise PeerClosed(f"{self.describe()}: connection closed")
            data += chunk
        return bytes(data)

    async def receive(self, limit: int = MAX_FRAME) -> Message:
        """The next message (ProtocolError for a malformed one or one longer than
        ``limit`` bytes, PeerClosed at the end, FrameRejected for one whose MAC
        is wrong)."""
        header = await self._exactly(HEADER.size, started=False)
        if self._receiving is None:
            length = frame_length(header)
            if length > limit:
                raise ProtocolError(f"frame of {length} bytes is larger than {limit}")
            return decode_message(await self._exactly(length, started=True))
        try:
            length = sealed_length(header)
            if length - TAG_BYTES > limit:
                raise ProtocolError(f"frame of {length - TAG_BYTES} bytes is larger than {limit}")
            payload = self._receiving.open(header, await self._exactly(length, started=True))
            return decode_message(payload)
        except ForgedFrame as e:
            self._end()
            log.warning("cluster: %s: %s (forged or altered); connection ended", self.describe(), e)
            raise FrameRejected(f"{self.describe()}: {e}") from None
        except ProtocolError as e:
            self._end()
            log.warning("cluster: %s: malformed message (%s); connection ended", self.describe(), e)
            raise MalformedFrame(f"{self.describe()}: malformed message: {e}") from None

    def _end(self) -> None:
        """End the connection now, both ways (the owner still closes the stream)."""
        with contextlib.suppress(OSError):  # already gone
            self.stream.socket.shutdown(socket.SHUT_RDWR)

    async def aclose(self) -> None:
        if not self._detached:
            await self.stream.aclose()

    async def __aenter__(self) -> PeerStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def detach_fd(self) -> int:
        """The raw socket fd, in blocking mode with TCP_NODELAY; the caller owns it.

        Python no longer touches it (aclose does nothing afterwards).  The fd is
        close-on-exec, like every fd Python makes: pass it with ``pass_fds``.
        """
        if self._detached:
            raise RuntimeError("the socket was already detached")
        sock = self.stream.socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 0)  # system default
        fd: int = sock.detach()
        os.set_blocking(fd, True)
        self._detached = True
        return fd


def give_up_after(sock: socket.socket | trio.socket.SocketType, seconds: float) -> None:
    """Let the kernel end the connection (ETIMEDOUT) once the peer has not answered
    for about ``seconds``: data unacknowledged that long (TCP_USER_TIMEOUT), or,
    while the connection is idle, keepalive probes unanswered that long.

    Every connection between agents gets it, and keeps it when handed to a C
    program (a migrated process's channel): a dead node or a network cut longer
    than ``seconds`` ends the connection on both sides, while a shorter cut only
    delays it.  Bound: a silent peer is noticed within ``seconds`` plus one
    probe interval (a quarter of it).
    """
    probe = max(1, round(seconds / 4))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 127)  # TCP_USER_TIMEOUT decides
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(seconds * 1000))


def reason(error: BaseException) -> str:
    """A short cause for an I/O failure."""
    for candidate in (error, error.__cause__, error.__context__):
        if isinstance(candidate, OSError) and candidate.errno:
            return os.strerror(candidate.errno)
    return str(error) or type(error).__name__
