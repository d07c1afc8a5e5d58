"""Measuring a link: TCP throughput from one node to another, with real sockets."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from mosix.testcluster.errors import ClusterError

if TYPE_CHECKING:
    from mosix.testcluster.cluster import LocalCluster

RECEIVER = """
import socket, sys, time
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
total, start = 0, None
while chunk := conn.recv(1 << 20):
    start = start or time.monotonic()
    total += len(chunk)
print(total, time.monotonic() - (start or time.monotonic()), flush=True)
"""

SENDER = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
block, left = bytes(1 << 20), int(sys.argv[3])
while left > 0:
    conn.sendall(block[: min(left, len(block))])
    left -= len(block)
conn.close()
"""


def bandwidth(cluster: LocalCluster, source: int, target: int, nbytes: int = 32 << 20) -> float:
    """Bytes per second that one TCP connection carries from node ``source`` to ``target``.

    Timed by the receiver, from the first byte to the end of the stream.
    """
    address = cluster.address(target)
    receiver = cluster.popen(
        target, [sys.executable, "-c", RECEIVER, address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        port = receiver.stdout.readline().strip()
        if not port.isdigit():
            raise ClusterError(f"node {target}: the bandwidth receiver did not start")
        sent = cluster.run(
            source,
            [sys.executable, "-c", SENDER, address, port, str(nbytes)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if sent.returncode != 0:
            last = (sent.stderr.strip().splitlines() or ["failed"])[-1]
            raise ClusterError(f"node {source}: bandwidth sender: {last}")
        total, seconds = receiver.communicate(timeout=120)[0].split()
    finally:
        if receiver.poll() is None:
            receiver.kill()
        receiver.wait()
    if int(total) != nbytes or float(seconds) <= 0:
        raise ClusterError(f"bandwidth {source} -> {target}: {total} of {nbytes} bytes arrived")
    return nbytes / float(seconds)
