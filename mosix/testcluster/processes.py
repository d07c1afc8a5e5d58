"""Finding and killing the processes of a node (by namespace, not by name).

A process belongs to node k when its network or mount namespace is the
node's.  Killing goes through pidfds, so a recycled pid is never hit, and
waiting for the end is an event (the pidfd turns readable), not a poll.
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

from mosix.testcluster.errors import ClusterError

NamespaceId = tuple[int, int]  # (st_dev, st_ino) of a namespace file


def namespace_id(path: Path | str) -> NamespaceId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in(namespaces: set[NamespaceId]) -> list[int]:
    """Live processes (not zombies) whose network or mount namespace is one of ``namespaces``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _belongs(int(entry.name), namespaces):
            found.append(int(entry.name))
    return found


def _belongs(pid: int, namespaces: set[NamespaceId]) -> bool:
    return any(namespace_id(f"/proc/{pid}/ns/{kind}") in namespaces for kind in ("net", "mnt"))


def kill_all(namespaces: set[NamespaceId], sig: int = signal.SIGKILL, timeout: float = 30.0) -> int:
    """Send ``sig`` to every process of ``namespaces`` until none is left; how many were hit.

    New processes forked meanwhile are found by the next round.  Only SIGKILL is
    certain to empty the namespaces; with another signal, processes that outlive
    it raise ClusterError after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    hit = 0
    while pids := pids_in(namespaces):
        pidfds = []
        for pid in pids:
            fd = _signal(pid, sig, namespaces)
            if fd is not None:
                pidfds.append(fd)
        hit += len(pidfds)
        try:
            wait_for_exit(pidfds, deadline - time.monotonic())
        finally:
            for fd in pidfds:
                os.close(fd)
    return hit


def _signal(pid: int, sig: int, namespaces: set[NamespaceId]) -> int | None:
    """A pidfd for ``pid`` once signalled, or None if it is gone or no longer ours."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not _belongs(pid, namespaces):  # the pid was recycled between the scan and the open
        os.close(fd)
        return None
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        os.close(fd)
        return None
    return fd


def wait_for_exit(pidfds: list[int], timeout: float) -> None:
    """Wait until every process behind ``pidfds`` has ended (zombies count as ended)."""
    deadline = time.monotonic() + timeout
    waiting = list(pidfds)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClusterError(f"{len(waiting)} processes did not end within {timeout:.0f} s")
        ready, _, _ = select.select(waiting, [], [], left)
        waiting = [fd for fd in waiting if fd not in ready]


def stop_process(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM ``pid`` and wait for it to end (SIGKILL after ``timeout``); False if it was gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
        except ProcessLookupError:
            return False
        try:
            wait_for_exit([fd], timeout)
        except ClusterError:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            wait_for_exit([fd], timeout)
        return True
    finally:
        os.close(fd)
