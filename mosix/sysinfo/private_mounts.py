"""The private temporary directories (mosrun -X) of a process, from its mountinfo.

Each is a tmpfs named :data:`mosix.native_names.PRIVATE_MOUNT_SOURCE` that the
launcher mounted in the process tree's own mount namespace
(``csrc/exec/private_dirs.c``); the C side reads them the same way
(``csrc/common/private_mounts.c``).
"""

from __future__ import annotations

import re

from mosix.native_names import PRIVATE_MOUNT_SOURCE
from mosix.sysinfo.proc_info import Pid, proc_file

_ESCAPED = re.compile(rb"\\([0-3][0-7][0-7])")


def _unescape(field: bytes) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    raw = _ESCAPED.sub(lambda m: bytes([int(m.group(1), 8)]), field)
    return raw.decode("utf-8", "surrogateescape")


def private_dirs(pid: Pid) -> list[str]:
    """The private directories of process ``pid``, in the order they are mounted
    ([] when it has none, or is gone)."""
    info = proc_file(pid, "mountinfo")
    if info is None:
        return []
    dirs: list[str] = []
    for line in info.splitlines():
        head, sep, tail = line.partition(b" - ")
        fields, after = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(after) < 2:
            continue
        if after[0] != b"tmpfs" or after[1] != PRIVATE_MOUNT_SOURCE.encode():
            continue
        point = _unescape(fields[4])
        if point.startswith("/") and point != "/" and point not in dirs:
            dirs.append(point)
    return dirs
