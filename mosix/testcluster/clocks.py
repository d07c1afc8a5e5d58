"""Each node's own clocks (optional): a time namespace per node.

The nodes of a test cluster share one kernel, so their clocks agree and a
program cannot tell whose clock it reads.  With ``clock_offsets``, node k gets
a time namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME run ``k *
OFFSET_STEP`` seconds ahead of the host's (CLOCK_REALTIME cannot be offset).
The vDSO honours it.  Like the mount namespace, it outlives its processes by
being bind-mounted on a file, ``/run/mosix-testcluster/NAME/nodek.time``; the
offsets are written before any process enters it (the kernel allows no later
change), and every command of the node enters it with nsenter.
"""

from __future__ import annotations

from mosix.testcluster.commands import system_command
from mosix.testcluster.layout import Layout

OFFSET_STEP = 1000  # seconds ahead of the host, per node number


def offset(k: int) -> int:
    """Node k's CLOCK_MONOTONIC and CLOCK_BOOTTIME offset, in seconds."""
    return k * OFFSET_STEP


def create(layout: Layout, k: int) -> None:
    """Node k's persistent time namespace."""
    ns_file = layout.time_ns_file(k)
    ns_file.touch(mode=0o644)
    seconds = str(offset(k))
    system_command(
        ["unshare", f"--time={ns_file}", "--monotonic", seconds, "--boottime", seconds, "true"],
        f"node {k}: creating its time namespace",
    )


def entering(layout: Layout, k: int) -> list[str]:
    """nsenter's option that enters node k's time namespace, if it has one."""
    ns_file = layout.time_ns_file(k)
    return [f"--time={ns_file}"] if ns_file.exists() else []
