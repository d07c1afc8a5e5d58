"""Facts about this node that placement and the queue need, read from /proc."""

from __future__ import annotations

import os
import socket
from pathlib import Path

PROC = Path("/proc")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


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
