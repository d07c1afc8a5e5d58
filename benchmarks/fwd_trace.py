"""Where a forwarded call's time goes: ``perf`` on the three processes of one call.

The copy (on the remote node), its supervisor mosix-remote and the deputy (at
home) run on one machine in a test cluster, so one clock stamps them all.
``perf record`` of their system calls (raw_syscalls, filtered to the few that
mark the steps) cuts each forwarded call at:

    a  the copy's previous call returned (the loop between calls is a few ns)
    b  mosix-remote's SECCOMP_IOCTL_NOTIF_RECV returned: it has the notification
    c  mosix-remote's sendmsg of the REQUEST frame starts
    d  the deputy's last recvfrom before its reply returned: it has the request
    e  the deputy's sendmsg of the REPLY frame starts
    f  mosix-remote's last recvfrom before its answer returned: it has the reply
    g  mosix-remote's SECCOMP_IOCTL_NOTIF_SEND starts
    h  the copy's call returns

A seccomp-notified call never reaches the raw_syscalls:sys_enter tracepoint
(seccomp runs first), hence ``a``.  Tracing costs every recorded event ~1 µs,
so the traced total is larger than the untraced one; the split is the point.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

NOTIF_RECV, NOTIF_SEND = "c0502100", "c0182101"  # SECCOMP_IOCTL_NOTIF_* as perf prints them
SYS_IOCTL, SYS_RECVFROM, SYS_SENDMSG = 16, 45, 46
CALL_NAMES = {1: "write", 0: "read", 257: "open", 3: "close"}  # the copy's calls
ENTER_IDS = (SYS_IOCTL, SYS_SENDMSG)
EXIT_IDS = (SYS_IOCTL, SYS_RECVFROM, *CALL_NAMES)
STAGES = (
    ("a", "b", "trap, supervisor wakes, NOTIF_RECV"),
    ("b", "c", "request built (process_vm_readv)"),
    ("c", "d", "request sent, deputy wakes, reads it"),
    ("d", "e", "deputy executes the call"),
    ("e", "f", "reply sent, supervisor wakes, reads it"),
    ("f", "g", "reply applied (ID_VALID, process_vm_writev)"),
    ("g", "h", "NOTIF_SEND, copy wakes"),
)
LINE = re.compile(r"\s*(\d+)\s+(\d+)\.(\d+):\s+NR (\d+) (?:\(([^)]*)\)|= -?\d+)")


@dataclass(frozen=True)
class Event:
    time: int  # ns
    pid: int
    nr: int
    enter: bool
    args: tuple[str, ...]


@dataclass(frozen=True)
class Pids:
    deputy: int
    copy: int
    remote: int


def perf_available() -> bool:
    probe = subprocess.run(["perf", "--version"], capture_output=True, check=False)
    return probe.returncode == 0


def record(pids: Pids, output: Path) -> tuple[subprocess.Popen[bytes], int]:
    """perf attached to the three processes, events on; returns it and its control fd."""
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    enter_filter = " || ".join(f"id == {n}" for n in ENTER_IDS)
    exit_filter = " || ".join(f"id == {n}" for n in EXIT_IDS)
    perf = subprocess.Popen(
        [
            "perf", "record", "-q", "-o", str(output), "-D", "-1",
            "--control", f"fd:{ctl_r},{ack_w}",
            "-e", "raw_syscalls:sys_enter", "--filter", enter_filter,
            "-e", "raw_syscalls:sys_exit", "--filter", exit_filter,
            "-p", f"{pids.deputy},{pids.copy},{pids.remote}",
        ],
        pass_fds=(ctl_r, ack_w),
    )  # fmt: skip
    os.close(ctl_r)
    os.close(ack_w)
    os.write(ctl_w, b"enable\n")
    ack = os.read(ack_r, 16)  # perf answers once the events are on
    os.close(ack_r)
    if not ack.startswith(b"ack"):
        perf.kill()
        raise RuntimeError("perf did not start recording")
    return perf, ctl_w


def events(data: Path) -> list[Event]:
    text = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "pid,time,trace", "--ns"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m is None:
            continue
        pid, sec, frac, nr, args = m.groups()
        ns = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        found.append(
            Event(ns, int(pid), int(nr), args is not None, tuple(args.split(", ")) if args else ())
        )
    found.sort(key=lambda e: e.time)
    return found


def cut_calls(evs: list[Event], pids: Pids) -> list[tuple[str, dict[str, int]]]:
    """Each forwarded call of the copy: its name and stamps a..h (complete, in order)."""
    calls: list[tuple[str, dict[str, int]]] = []
    last_enter: dict[int, Event] = {}
    stamps: dict[str, int] | None = None
    for ev in evs:
        if ev.enter:
            last_enter[ev.pid] = ev
            if stamps is None:
                continue
            if ev.pid == pids.remote and ev.nr == SYS_SENDMSG and "b" in stamps:
                stamps.setdefault("c", ev.time)
            elif ev.pid == pids.deputy and ev.nr == SYS_SENDMSG and "c" in stamps:
                stamps.setdefault("e", ev.time)
            elif (
                ev.pid == pids.remote
                and ev.nr == SYS_IOCTL
                and ev.args[1:2] == (NOTIF_SEND,)
                and "e" in stamps
            ):
                stamps.setdefault("g", ev.time)
            continue
        if ev.pid == pids.copy:
            if stamps is not None and "a" in stamps and ev.nr in CALL_NAMES:
                stamps["h"] = ev.time
                order = [stamps.get(k) for k in "abcdefgh"]
                if all(order) and order == sorted(order):  # type: ignore[type-var]
                    calls.append((CALL_NAMES[ev.nr], stamps))
            stamps = {"a": ev.time}
            continue
        if stamps is None:
            continue
        entered = last_enter.get(ev.pid)
        if (
            ev.pid == pids.remote
            and ev.nr == SYS_IOCTL
            and entered is not None
            and entered.args[1:2] == (NOTIF_RECV,)
        ):
            stamps.setdefault("b", ev.time)
        elif ev.nr != SYS_RECVFROM:
            continue
        elif ev.pid == pids.deputy and "c" in stamps and "e" not in stamps:
            stamps["d"] = ev.time  # the last one before the reply
        elif ev.pid == pids.remote and "e" in stamps and "g" not in stamps:
            stamps["f"] = ev.time
    return calls


@dataclass
class Breakdown:
    calls: dict[str, int]  # call -> how many were cut
    total: dict[str, float]  # call -> median ns, traced
    stages: dict[str, dict[str, float]]  # call -> stage label -> median ns


def breakdown(evs: list[Event], pids: Pids) -> Breakdown:
    cut = cut_calls(evs, pids)
    result = Breakdown({}, {}, {})
    for name in CALL_NAMES.values():
        mine = [s for n, s in cut if n == name]
        if not mine:
            continue
        result.calls[name] = len(mine)
        result.total[name] = statistics.median(s["h"] - s["a"] for s in mine)
        result.stages[name] = {
            label: statistics.median(s[y] - s[x] for s in mine) for x, y, label in STAGES
        }
    return result
