"""Reading facts about processes from /proc (no permission: None)."""

from __future__ import annotations

from pathlib import Path

from mosix.launch import INHERIT_ENV

PROC = Path("/proc")
_INHERIT_PREFIX = (INHERIT_ENV + "=").encode()


def pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): tells a reused pid apart."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2 :].split()
    return int(rest[19]) if len(rest) > 19 else None


def state_letter(pid: int) -> str | None:
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    rest = stat[stat.rfind(b")") + 2 :].split()
    return rest[0].decode() if rest else None


def is_checkpoint_copy(pid: int) -> bool:
    """The checkpointer's frozen copy of a process: a child without an exit signal
    (``clone`` flags 0, /proc/PID/stat field 38), which lives only during a capture."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return False
    rest = stat[stat.rfind(b")") + 2 :].split()
    return len(rest) > 35 and rest[35] == b"0"


def real_uid(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb(pid: int) -> int:
    try:
        pages = int((PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * 4096 // (1 << 20)


def command(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [w.decode(errors="replace") for w in raw.split(b"\0")[:-1]]


def inherited_words(pid: int) -> list[str] | None:
    """The MOSIX_INHERIT words the process was started with (None: not a MOSIX process)."""
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(_INHERIT_PREFIX):
            return entry[len(_INHERIT_PREFIX) :].decode(errors="replace").split()
    return None


def alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)
