"""Talking to the node agent from mosrun and the tools (blocking, no trio).

``connect()`` finds the agent (the system one, else the user's own) and, when
none answers, starts the embedded default: a detached ``mosixd`` that signals
readiness through a pipe.  Failures are :class:`AgentUnavailable` with one
line for the user.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
from collections.abc import Sequence
from typing import TypeVar

from mosix import native_names
from mosix.agent_paths import AgentPaths, candidate_paths, own_paths
from mosix.exits import EXIT_USAGE, Failure
from mosix.protocol import (
    HEADER,
    MAX_FRAME,
    Message,
    ProtocolError,
    Refused,
    Register,
    Registered,
    decode_message,
    encode_message,
    frame_length,
)

REPLY_TIMEOUT = float(os.environ.get("MOSIX_AGENT_TIMEOUT", "10"))
# The socket of the agent a mosrun registered with; its guard sends the
# program's own checkpoint requests there (csrc/exec/guard_agent.c).
AGENT_SOCKET_ENV = native_names.AGENT_SOCKET_ENV
START_TIMEOUT = 20.0
M = TypeVar("M", bound=Message)


class AgentUnavailable(Failure):
    pass


class AgentRefused(Failure):
    pass


class AgentClient:
    def __init__(self, sock: socket.socket, paths: AgentPaths) -> None:
        self.sock = sock
        self.paths = paths

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg: Message, fds: Sequence[int] = ()) -> None:
        data = encode_message(msg)
        try:
            if fds:
                sent = socket.send_fds(self.sock, [data], list(fds))
                data = data[sent:]
            self.sock.sendall(data)
        except OSError as e:
            refusal = self.last_words()
            if refusal is not None:  # the agent said why it would not listen, then closed
                raise AgentRefused(refusal, EXIT_USAGE) from None
            raise AgentUnavailable(
                f"lost the node agent ({self.paths.socket}): {e.strerror}"
            ) from None

    def last_words(self) -> str | None:
        """The Refused line an agent sent before it closed the connection, if that is
        what waits to be read (peeked at: any other message stays for receive())."""
        try:
            data = self.sock.recv(HEADER.size + MAX_FRAME, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            length = frame_length(data[: HEADER.size])
            if len(data) < HEADER.size + length:
                return None
            reply = decode_message(data[HEADER.size : HEADER.size + length])
        except (OSError, ProtocolError, struct.error):
            return None
        return reply.error if isinstance(reply, Refused) else None

    def _read_exact(self, size: int, timeout: float | None) -> bytes | None:
        chunks = bytearray()
        self.sock.settimeout(timeout)
        while len(chunks) < size:
            try:
                data = self.sock.recv(size - len(chunks))
            except TimeoutError:
                raise AgentUnavailable(
                    f"the node agent does not answer ({self.paths.socket})"
                ) from None
            except OSError as e:
                raise AgentUnavailable(f"lost the node agent: {e.strerror}") from None
            if not data:
                return None
            chunks += data
        return bytes(chunks)

    def receive(self, timeout: float | None = REPLY_TIMEOUT) -> Message | None:
        """The next message; None if the agent closed the connection."""
        header = self._read_exact(HEADER.size, timeout)
        if header is None:
            return None
        try:
            payload = self._read_exact(frame_length(header), timeout)
            if payload is None:
                return None
            return decode_message(payload)
        except ProtocolError as e:
            raise AgentUnavailable(f"the node agent sent a bad reply: {e}") from None

    def request(self, msg: Message, expect: type[M]) -> M:
        """Send ``msg`` and return the reply of type ``expect``; refusals raise."""
        self.send(msg)
        reply = self.receive()
        if reply is None:
            raise AgentUnavailable(f"the node agent closed the connection ({self.paths.socket})")
        if isinstance(reply, Refused):
            raise AgentRefused(reply.error, EXIT_USAGE)
        if not isinstance(reply, expect):
            raise AgentUnavailable(f"the node agent answered '{reply.OP}' to '{msg.OP}'")
        return reply

    def request_listing(self, msg: Message, expect: type[M]) -> list[M]:
        """Send ``msg`` and gather the frames of a long listing."""
        parts = [self.request(msg, expect)]
        while getattr(parts[-1], "more", False):
            reply = self.receive()
            if not isinstance(reply, expect):
                raise AgentUnavailable("the node agent broke off a listing")
            parts.append(reply)
        return parts


def adopt(fd: int) -> AgentClient:
    """The connection to the agent open on ``fd`` (made by the process before an exec)."""
    from pathlib import Path

    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return AgentClient(sock, AgentPaths(Path(sock.getpeername()).parent))


def try_connect(paths: AgentPaths) -> AgentClient | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(paths.socket))
    except OSError:
        sock.close()
        return None
    return AgentClient(sock, paths)


def start_agent(paths: AgentPaths) -> None:
    """Start a detached agent on ``paths`` and wait until its socket is ready."""
    import subprocess  # only to start an agent: a client of a running one starts without

    from mosix.sysinfo.proc_info import under_discipline

    if under_discipline():
        raise AgentUnavailable(
            f"no node agent runs ({paths.socket}) and one cannot be started from under "
            "the MOSIX discipline"
        )
    read_end, write_end = os.pipe()
    env = dict(os.environ)
    env.pop("MOSIX_INHERIT", None)
    env.pop("MOSIX_ADMISSION", None)
    try:
        subprocess.run(
            [
                sys.executable or "python3",
                "-P",  # the installed mosix, never one in the current directory
                "-m",
                "mosix.tools.mosixd",
                "--detach",
                "--ready-fd",
                str(write_end),
                "--run-dir",
                str(paths.run_dir),
            ],
            pass_fds=[write_end],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=True,
            timeout=START_TIMEOUT,
            group=os.getgid(),  # a user's own agent never keeps the site wrapper's group
        )
    except (OSError, subprocess.SubprocessError) as e:
        os.close(read_end)
        raise AgentUnavailable(f"cannot start the node agent: {e}") from None
    finally:
        os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], START_TIMEOUT)
        if ready:
            os.read(read_end, 64)  # "ready", or EOF when another agent already ran
    finally:
        os.close(read_end)


def connect(autostart: bool = True) -> AgentClient:
    """A connection to this node's agent, starting the embedded default if needed."""
    for paths in candidate_paths():
        client = try_connect(paths)
        if client is not None:
            return client
    if not autostart:
        where = " or ".join(str(p.socket) for p in candidate_paths())
        raise AgentUnavailable(f"no node agent runs ({where})")
    paths = own_paths()
    start_agent(paths)
    client = try_connect(paths)
    if client is None:
        raise AgentUnavailable(
            f"started the node agent but cannot reach {paths.socket} (see {paths.log})"
        )
    return client


REGISTER_TIMEOUT = 2.0  # a wedged agent must not hold up every mosrun for long


def register_program(msg: Register) -> tuple[str, Registered] | None:
    """Register a program about to start (best effort): the agent's socket and
    its answer, or None when no agent can be reached.

    A program runs even when no agent can be reached: the agent finds it later
    in /proc through its MOSIX_INHERIT environment.  A refused placement
    (``msg.placement``) is the one refusal that stops it (AgentRefused).
    """
    try:
        with connect(autostart=True) as client:
            client.sock.settimeout(REGISTER_TIMEOUT)
            answer = client.request(msg, Registered)
            return str(client.paths.socket), answer
    except AgentRefused as e:
        from mosix.start_contract import is_site_group_refusal

        if msg.placement or is_site_group_refusal(e.message):
            raise
        return None
    except (AgentUnavailable, OSError, Failure):
        return None
