"""Facts about this node that placement and the queue need, read from /proc."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")


def cpu_count() -> int:
    """Processors this node may use: its affinity, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except OSError:
        count = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return count if limit is None else max(min(count, math.ceil(limit)), 1)


def cgroup_cpu_limit(own: str | None = None) -> float | None:
    """The smallest CPU quota (in processors) of this process's cgroup and its
    ancestors; None when there is none.  ``own``: /proc/self/cgroup's text."""
    if own is None:
        try:
            own = (PROC / "self" / "cgroup").read_text()
        except OSError:
            return None
    limits = []
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2]
        if "cpu" in controllers.split(","):
            roots = [CGROUP / controllers, CGROUP / "cpu"]
        elif controllers == "":
            roots = [CGROUP, CGROUP / "unified"]
        else:
            continue
        for root in roots:
            if root.is_dir():
                limits += quotas_along(root, path)
                break
    return min(limits) if limits else None


def quotas_along(root: Path, path: str) -> list[float]:
    """The quotas (processors) set on ``path`` and its ancestors below ``root``."""
    found = []
    group = root / path.strip("/")
    while True:
        quota = quota_of(group)
        if quota is not None:
            found.append(quota)
        if group == root or root not in group.parents:
            return found
        group = group.parent


def quota_of(group: Path) -> float | None:
    try:
        if (group / "cpu.max").exists():
            words = (group / "cpu.max").read_text().split()
            if words[0] == "max":
                return None
            quota, period = int(words[0]), int(words[1])
        else:
            quota = int((group / "cpu.cfs_quota_us").read_text())
            period = int((group / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_speed_mhz(cpuinfo: str | None = None) -> float:
    """Mean 'cpu MHz' over the processors (0.0 when the kernel does not say)."""
    if cpuinfo is None:
        try:
            cpuinfo = (PROC / "cpuinfo").read_text()
        except OSError:
            return 0.0
    speeds = [
        float(line.split(":", 1)[1])
        for line in cpuinfo.splitlines()
        if line.startswith("cpu MHz") and ":" in line
    ]
    return round(sum(speeds) / len(speeds), 1) if speeds else 0.0


def load_average() -> list[float]:
    try:
        return [float(x) for x in (PROC / "loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return [0.0, 0.0, 0.0]


def memory_mb(meminfo: str | None = None) -> tuple[int, int]:
    """(total, available) memory in MB."""
    if meminfo is None:
        try:
            meminfo = (PROC / "meminfo").read_text()
        except OSError:
            return 0, 0
    values: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[name] = int(words[0])  # kB
    total = values.get("MemTotal", 0)
    available = values.get("MemAvailable", values.get("MemFree", 0))
    return total // 1024, available // 1024


def host_name() -> str:
    return socket.gethostname()
