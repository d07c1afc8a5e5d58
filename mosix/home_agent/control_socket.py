"""The control socket: binding it, and letting clients in (within the admission limits)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

import trio

from mosix.agent_paths import AgentPaths
from mosix.home_agent.admission import Admission
from mosix.home_agent.connection import Connection, peer_of
from mosix.home_agent.limits import SHORTAGE, AgentLimits
from mosix.home_agent.replies import refuse_at_once

log = logging.getLogger("mosixd")
ACCEPT_PAUSE = 0.1  # out of descriptors or buffers: wait this long before accepting again
ACCEPT_LOG_EVERY = 60.0  # and say so in the log at most this often


class ControlSocket:
    def __init__(
        self,
        listener: trio.socket.SocketType,
        limits: AgentLimits,
        admission: Admission,
        handle: Callable[[Connection], Awaitable[None]],
    ) -> None:
        self.listener = listener
        self.limits = limits
        self.admission = admission
        self.handle = handle  # one client's requests, until it closes
        self.accept_logged = -ACCEPT_LOG_EVERY

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            await self.accept_loop(nursery)

    async def accept_loop(self, nursery: trio.Nursery) -> None:
        limits = self.limits
        while True:
            try:
                sock, _ = await self.listener.accept()
            except OSError as e:
                if e.errno in SHORTAGE:
                    self.accept_shortage(e)
                    await trio.sleep(ACCEPT_PAUSE)  # connections end and free what we lack
                    continue
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EPERM):
                    continue  # that client is gone (or a security module said no): the next one
                raise
            try:
                peer = peer_of(sock)
            except OSError:
                sock.close()
                continue
            refusal = self.admission.admit(peer)
            if refusal is not None:
                refuse_at_once(sock, refusal)
                self.accept_shortage(None, f"refused pid {peer.pid} (uid {peer.uid}): {refusal}")
                continue
            conn = Connection(
                sock,
                peer,
                limits.frame_seconds,
                room=lambda size, uid=peer.uid: self.admission.take_inflight(uid, size),
                done=lambda size, uid=peer.uid: self.admission.give_inflight(uid, size),
            )
            nursery.start_soon(self.handle, conn)

    def accept_shortage(self, error: OSError | None, what: str = "") -> None:
        """Say in the log that connections are refused or wait, at most every ACCEPT_LOG_EVERY."""
        now = time.monotonic()
        if now - self.accept_logged >= ACCEPT_LOG_EVERY:
            self.accept_logged = now
            if error is not None:
                what = f"cannot accept connections for now: {error.strerror}"
            log.warning("%s (said at most every %g s)", what, ACCEPT_LOG_EVERY)


def bind_listener(paths: AgentPaths, shared: bool) -> trio.socket.SocketType:
    """The control socket; ``shared`` (system agent) lets every user connect."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.socket)
    plain = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    plain.bind(str(paths.socket))
    os.chmod(paths.socket, 0o666 if shared else 0o600)
    plain.listen(512)
    return trio.socket.from_stdlib_socket(plain)
