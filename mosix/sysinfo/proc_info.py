"""Reading facts about processes from /proc (no permission: None)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mosix.native_names import Program
from mosix.start_contract import INHERIT_ENV

PROC = Path("/proc")
GUEST_SUPERVISOR = Program.REMOTE  # the parent of every guest (csrc/remote/mosix_remote.c)


def pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


@functools.cache
def node_netns() -> str | None:
    """This node's network namespace when it is not the machine's initial one (a node of
    the local test cluster, where nodes share one kernel and tell their processes apart by
    namespace); None: every process of the machine is this node's."""
    try:
        own = os.readlink(PROC / "self" / "ns" / "net")
    except OSError:
        return None
    try:
        initial = os.readlink(PROC / "1" / "ns" / "net")
    except OSError:
        # pid 1 hidden (a container): root can still tell namespaces apart by looking at
        # each process; other users cannot, and count the machine's processes
        return own if os.geteuid() == 0 else None
    return None if own == initial else own


def on_this_node(pid: int) -> bool:
    """Whether the process lives on this node (see node_netns)."""
    own = node_netns()
    if own is None:
        return True
    try:
        return os.readlink(PROC / str(pid) / "ns" / "net") == own
    except OSError:
        return False


def is_guest(pid: int) -> bool:
    """A process of another home node running here: its parent is mosix-remote."""
    ppid = status_value(pid, "PPid")
    if not ppid:
        return False
    try:
        return (PROC / ppid / "comm").read_text().strip() == GUEST_SUPERVISOR
    except OSError:
        return False


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


def children(pid: int) -> list[int]:
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


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


def command(pid: int) -> list[bytes]:
    """The process's argv, as its bytes."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return raw.split(b"\0")[:-1]


def initial_env(pid: int, name: str) -> str | None:
    """A variable of the environment the process was started with (None: absent)."""
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = (name + "=").encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def inherited_words(pid: int) -> list[str] | None:
    """The MOSIX_INHERIT words the process was started with (None: not a MOSIX process)."""
    words = initial_env(pid, INHERIT_ENV)
    return None if words is None else words.split()


def disciplined(pid: int) -> bool:
    """What the discipline vouches for, which no user can forge: the process runs under
    seccomp filters with no_new_privs (so it cannot have gained privileges by executing
    a set-id program since: the kernel refuses), and all its user and group ids are its
    real ones (not a set-id program that set no_new_privs itself).  MOSIX_INHERIT in its
    environment alone is a claim anyone can make."""
    fields = status_fields(pid)
    return fields is not None and vouched(fields)


def status_fields(pid: int) -> dict[str, str] | None:
    """/proc/PID/status as a mapping (None: no such process, or not readable)."""
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return None
    return {
        name: value.strip()
        for name, _, value in (line.partition(":") for line in status.splitlines())
    }


def vouched(fields: dict[str, str]) -> bool:
    """:func:`disciplined` for a process's :func:`status_fields`."""
    ids = [fields.get(key, "").split() for key in ("Uid", "Gid")]
    return (
        fields.get("NoNewPrivs", "").strip() == "1"
        and fields.get("Seccomp", "").strip() == "2"
        and all(len(i) == 4 and len(set(i)) == 1 for i in ids)
    )


def alive(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and (ticks is None or now == ticks)


def exists(pid: int) -> bool:
    """The process is there and not a zombie."""
    return state_letter(pid) not in (None, "Z", "X")


def real_gid(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("Gid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def context_switches(pid: int) -> int | None:
    """How often the process has given up a processor, by choice or not: the count
    moves only while it runs, so a change says a blocked process woke up since."""
    fields = status_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    except (KeyError, ValueError):
        return None


def status_value(pid: int, key: str) -> str | None:
    fields = status_fields(pid)
    return None if fields is None else fields.get(key)


def stay_reason(pid: int) -> str:
    """Why the process cannot migrate ("" : nothing known keeps it).

    What the discipline's pinned calls make (docs/SYSCALLS.md), read from the kernel,
    so a pin lifts by itself when the thing is released: threads, locked pages,
    shared maps, a NUMA memory policy.
    """
    threads = status_value(pid, "Threads")
    if threads and threads != "1":
        return f"it has {threads} threads"
    locked = status_value(pid, "VmLck")
    if locked and not locked.startswith("0 "):
        return "it has locked memory (mlock, MAP_LOCKED)"
    try:
        maps = (PROC / str(pid) / "maps").read_text()
    except OSError:
        return ""
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 5:
            continue
        perms, path = fields[1], fields[5] if len(fields) > 5 else ""
        if perms[3] == "s":
            shared = "shared writable" if "w" in perms else "shared"
            return f"it maps {shared} memory ({path or 'anonymous'})"
        if path.startswith("/dev/") and not path.startswith("/dev/zero"):
            return f"it maps a device ({path})"
    return numa_policy(pid)


def numa_policy(pid: int) -> str:
    """The process's NUMA memory policy when it has set one (mbind, set_mempolicy)."""
    try:
        with open(PROC / str(pid) / "numa_maps") as f:  # no NUMA: no file
            for line in f:
                fields = line.split(maxsplit=2)
                if len(fields) > 1 and fields[1] != "default":
                    return f"it has a NUMA memory policy ({fields[1]})"
    except OSError:
        pass
    return ""


def under_discipline() -> bool:
    """True when this process runs under a seccomp filter (mode 2)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split()[1] == "2"
    except OSError:
        pass
    return False
