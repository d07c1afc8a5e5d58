"""Loopback addresses for cluster tests: 127.0.0.1, .2, .3 act as three nodes."""

from __future__ import annotations

import contextlib
import socket


def free_port() -> int:
    """A TCP port free on 127.0.0.1, .2 and .3 (checked by binding it on each)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        with contextlib.ExitStack() as stack:
            try:
                for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.9"):
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port")
