"""Reading facts about processes from /proc (no permission: None).

The agents scan every process of the node (discovery, load vectors, a guard's
tree), so the readers work on bytes: ``os.open``/``os.read`` of a path string,
no pathlib object and no decoding of what is not kept.  One parser per file:
:func:`stat_fields` for ``stat``, :func:`status_fields` for ``status``,
:func:`initial_env` for ``environ``; every other reader goes through them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection

from mosix.ckpt.format import MAX_THREADS
from mosix.native_names import Program
from mosix.start_contract import INHERIT_ENV

PROC = "/proc"
READ_SIZE = 64 * 1024
GUEST_SUPERVISOR = Program.REMOTE  # the parent of every guest (csrc/remote/mosix_remote.c)
VOUCHED_FIELDS = ("Uid", "Gid", "NoNewPrivs", "Seccomp")  # what :func:`vouched` looks at
Pid = int | str  # a number, or "self"


def read_file(path: str) -> bytes | None:
    """The whole of a /proc file (None: it cannot be opened or read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, READ_SIZE)
        if len(data) == READ_SIZE:  # a long one (environ, cmdline, maps): the rest
            parts = [data]
            while chunk := os.read(fd, READ_SIZE):
                parts.append(chunk)
            data = b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data


def proc_file(pid: Pid, name: str) -> bytes | None:
    """/proc/PID/NAME (None: no such process, or not readable)."""
    return read_file(f"{PROC}/{pid}/{name}")


def pids() -> list[int]:
    return [int(name) for name in os.listdir(PROC) if name.isdigit()]


@functools.cache
def node_netns() -> str | None:
    """This node's network namespace when it is not the machine's initial one (a node of
    the local test cluster, where nodes share one kernel and tell their processes apart by
    namespace); None: every process of the machine is this node's."""
    own = net_namespace("self")
    if own is None:
        return None
    try:
        initial = os.readlink(f"{PROC}/1/ns/net")
    except OSError:
        # pid 1 hidden (a container): root can still tell namespaces apart by looking at
        # each process; other users cannot, and count the machine's processes
        return own if os.geteuid() == 0 else None
    return None if own == initial else own


def net_namespace(pid: Pid) -> str | None:
    """The process's network namespace, as /proc/PID/ns/net names it."""
    try:
        return os.readlink(f"{PROC}/{pid}/ns/net")
    except OSError:
        return None


def on_this_node(pid: int) -> bool:
    """Whether the process lives on this node (see node_netns)."""
    own = node_netns()
    return own is None or net_namespace(pid) == own


def comm(pid: Pid) -> str | None:
    """The process's name (/proc/PID/comm, without its newline)."""
    raw = proc_file(pid, "comm")
    return None if raw is None else raw.rstrip(b"\n").decode(errors="replace")


def is_guest(pid: int) -> bool:
    """A process of another home node running here: its parent is mosix-remote."""
    ppid = status_value(pid, "PPid")
    return bool(ppid) and comm(ppid) == GUEST_SUPERVISOR


def stat_fields(pid: Pid, tid: int | str | None = None) -> list[bytes] | None:
    """/proc/PID/stat (of thread ``tid``: /proc/PID/task/TID/stat) from its third field
    on: [0] is the state, [17] the number of threads, [19] the start time, [35] the exit
    signal (proc(5)'s fields 3, 20, 22 and 38).  None: no such process."""
    raw = proc_file(pid, "stat" if tid is None else f"task/{tid}/stat")
    if raw is None:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot): tells a reused pid apart."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def state_letter(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[0].decode() if fields else None


def is_checkpoint_copy(pid: int) -> bool:
    """The checkpointer's frozen copy of a process: a child without an exit signal
    (``clone`` flags 0, /proc/PID/stat field 38), which lives only during a capture."""
    fields = stat_fields(pid)
    return fields is not None and len(fields) > 35 and fields[35] == b"0"


def children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"{PROC}/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        raw = proc_file(pid, f"task/{task}/children")
        if raw is not None:
            found += [int(c) for c in raw.split()]
    return found


def real_uid(pid: int) -> int | None:
    return first_id(status_value(pid, "Uid"))


def first_id(ids: str | None) -> int | None:
    """The real one of a status line's ids (``Uid``, ``Gid``: real, effective, ...)."""
    try:
        return None if ids is None else int(ids.split()[0])
    except (ValueError, IndexError):
        return None


def rss_mb(pid: int) -> int:
    raw = proc_file(pid, "statm")
    try:
        pages = int(raw.split()[1]) if raw is not None else 0
    except (ValueError, IndexError):
        return 0
    return pages * 4096 // (1 << 20)


def command(pid: int) -> list[bytes]:
    """The process's argv, as its bytes."""
    raw = proc_file(pid, "cmdline")
    return [] if raw is None else raw.split(b"\0")[:-1]


def initial_env(pid: int, name: str) -> str | None:
    """A variable of the environment the process was started with (None: absent)."""
    environ = proc_file(pid, "environ")
    if environ is None:
        return None
    prefix = name.encode() + b"="
    if environ.startswith(prefix):
        start = len(prefix)
    else:
        at = environ.find(b"\0" + prefix)
        if at < 0:
            return None
        start = at + 1 + len(prefix)
    end = environ.find(b"\0", start)
    return environ[start : end if end >= 0 else len(environ)].decode(errors="replace")


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
    fields = status_fields(pid, VOUCHED_FIELDS)
    return fields is not None and vouched(fields)


def status_fields(pid: Pid, names: Collection[str] | None = None) -> dict[str, str] | None:
    """/proc/PID/status as a mapping, of ``names`` only if given (the scan stops when
    it has them all).  None: no such process, or not readable."""
    raw = proc_file(pid, "status")
    if raw is None:
        return None
    wanted = None if names is None else {name.encode() for name in names}
    fields: dict[str, str] = {}
    for line in raw.split(b"\n"):
        key, _, value = line.partition(b":")
        if wanted is None or key in wanted:
            fields[key.decode(errors="replace")] = value.strip().decode(errors="replace")
            if wanted is not None and len(fields) == len(wanted):
                break
    return fields


def vouched(fields: dict[str, str]) -> bool:
    """:func:`disciplined` for a process's :func:`status_fields` (VOUCHED_FIELDS at least)."""
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
    return first_id(status_value(pid, "Gid")) or 0


def context_switches(pid: Pid) -> int | None:
    """How often the process has given up a processor, by choice or not: the count
    moves only while it runs, so a change says a blocked process woke up since."""
    fields = status_fields(pid, ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
    if fields is None:
        return None
    try:
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    except (KeyError, ValueError):
        return None


def status_value(pid: Pid, key: str) -> str | None:
    fields = status_fields(pid, (key,))
    return None if fields is None else fields.get(key)


def stay_reason(pid: int) -> str:
    """Why the process cannot migrate ("" : nothing known keeps it).

    What the discipline's pinned calls make (docs/SYSCALLS.md), read from the kernel,
    so a pin lifts by itself when the thing is released: locked pages, shared maps,
    a NUMA memory policy, an open userfaultfd or perf_event counter, more threads than
    an image holds (fewer move with it).
    """
    threads = status_value(pid, "Threads")
    if threads and threads.isdigit() and int(threads) > MAX_THREADS:
        return f"it has {threads} threads (at most {MAX_THREADS} can move)"
    locked = status_value(pid, "VmLck")
    if locked and not locked.startswith("0 "):
        return "it has locked memory (mlock, MAP_LOCKED)"
    held = node_bound_descriptor(pid)
    if held:
        return held
    raw = proc_file(pid, "maps")
    if raw is None:
        return ""
    for line in raw.decode(errors="replace").splitlines():
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


# Descriptors of the pinned calls' kernel objects, which serve the process on this node.
NODE_BOUND_DESCRIPTORS = {
    "anon_inode:[userfaultfd]": "it serves its own page faults (a userfaultfd is open)",
    "anon_inode:[perf_event]": "it counts its own events on this node (a perf_event is open)",
}


def node_bound_descriptor(pid: int) -> str:
    """Why an open descriptor keeps the process here ("": none does)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return ""
    for name in names:
        try:
            why = NODE_BOUND_DESCRIPTORS.get(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
        if why:
            return why
    return ""


def numa_policy(pid: int) -> str:
    """The process's NUMA memory policy when it has set one (mbind, set_mempolicy)."""
    raw = proc_file(pid, "numa_maps")  # no NUMA: no file
    for line in (raw or b"").splitlines():
        fields = line.split(maxsplit=2)
        if len(fields) > 1 and fields[1] != b"default":
            return f"it has a NUMA memory policy ({fields[1].decode(errors='replace')})"
    return ""


def under_discipline() -> bool:
    """True when this process runs under a seccomp filter (mode 2)."""
    return status_value("self", "Seccomp") == "2"
