"""Answers on the control socket: never blocking the agent on a slow client."""

from __future__ import annotations

import contextlib
import logging
import os

import trio

from mosix.home_agent.connection import Connection
from mosix.protocol import Message, ProtocolError, Refused, encode_message

log = logging.getLogger("mosixd")
SEND_TIMEOUT = 10.0  # a client that does not read its replies for this long is dropped


async def reply(conn: Connection, msg: Message) -> None:
    """Send ``msg``; a client that does not read within SEND_TIMEOUT is dropped.
    A reply too large for a frame becomes a Refused line."""
    if isinstance(msg, Refused):
        msg = Refused(error=" ".join(msg.error.split()))  # one line, always
    try:
        encode_message(msg)
    except ProtocolError as e:
        log.error("reply '%s' to pid %d not sent: %s", msg.OP, conn.peer.pid, e)
        msg = Refused(error=f"the answer is too large to send: {e}")
    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        with trio.move_on_after(SEND_TIMEOUT) as scope:
            await conn.send(msg)
        if scope.cancelled_caught:
            log.warning("dropping pid %d: it does not read its replies", conn.peer.pid)
            conn.sock.close()


def refuse_at_once(sock: trio.socket.SocketType, error: str) -> None:
    """One Refused line to a client that is not let in, then close (never blocks:
    a new connection's send buffer is empty)."""
    with contextlib.suppress(OSError):
        os.write(sock.fileno(), encode_message(Refused(error=error)))
    sock.close()
