"""What automatic migration knows about each process: CPU demand and I/O rate, decayed.

Two numbers per process, sampled from /proc at every balancing round:

- demand: the share of the time it wanted a processor (ran or waited on a run
  queue: /proc/PID/task/*/schedstat, summed over its threads: a process whose
  main thread sleeps while others compute is busy), 1.0 for a CPU-bound process
  however loaded its node is, near 0 for one that sleeps;
- I/O rate: read- and write-like system calls per second (/proc/PID/io syscr +
  syscw).  For a process away, the pid at home is its deputy, which executes
  the forwarded calls: the rate is then that of the calls forwarded home.

The first sample of a process that never moved covers its life so far (its
start time is known), so a new process can be judged at the first round.
The statistics decay at the process's -d rate: a fraction decay/10000 of their
weight goes per second (mosrun -d; 0: no decay, the lifetime mean; 10000:
only the last sample counts).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mosix.sysinfo import proc_info

PROC = Path("/proc")
DECAY_SCALE = 10000
DEFAULT_DECAY = 5000  # half the weight goes every second
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    when: float  # monotonic seconds
    busy_ns: int  # ran + waited on a run queue
    calls: int  # read- and write-like system calls
    started: float | None = None  # when the process started (monotonic seconds), if known


@dataclass
class Stats:
    demand: float = 0.0
    io_rate: float = 0.0
    last: Sample | None = None
    seconds: float = 0.0  # time covered so far (for the lifetime mean of decay 0)


def sample(pid: int, now: float | None = None) -> Sample | None:
    """The process's counters now (None: it is gone or /proc does not tell)."""
    try:
        busy = threads_busy_ns(pid)
        calls = 0
        for line in (PROC / str(pid) / "io").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("syscr", "syscw"):
                calls += int(value)
    except (OSError, ValueError):
        return None
    ticks = proc_info.start_ticks(pid)
    started = None if ticks is None else ticks / CLOCK_TICKS  # since boot, as CLOCK_MONOTONIC
    when = time.monotonic() if now is None else now
    return Sample(when, busy, calls, started)


def threads_busy_ns(pid: int) -> int:
    """Run + run-queue wait time of all the process's threads (a thread that ends
    between two samples takes its share with it: the difference is then clamped)."""
    busy = 0
    for task in (PROC / str(pid) / "task").iterdir():
        try:
            run_ns, wait_ns, *_ = (task / "schedstat").read_text().split()
        except FileNotFoundError:
            continue  # the thread ended while we looked
        busy += int(run_ns) + int(wait_ns)
    return busy


def fold(stats: Stats, new: Sample, decay: int, lifetime: bool = False) -> Stats:
    """``stats`` with sample ``new`` taken in: the old weight decays by ``decay``/10000
    per second of the interval.  ``lifetime``: a first sample counts from the process's
    start (its counters are its own since then: it never moved)."""
    old = stats.last
    if old is None and lifetime and new.started is not None and new.when > new.started:
        old = Sample(new.started, 0, 0)  # a first sample: the counters cover its life
    if old is None or new.when <= old.when:
        return Stats(stats.demand, stats.io_rate, new, stats.seconds)
    dt = new.when - old.when
    demand = min(max((new.busy_ns - old.busy_ns) / 1e9 / dt, 0.0), 1.0)
    rate = max(new.calls - old.calls, 0) / dt
    if stats.seconds == 0.0:
        keep = 0.0  # the first interval is all there is
    elif decay == 0:
        keep = stats.seconds / (stats.seconds + dt)  # the lifetime mean
    else:
        keep = (1.0 - min(decay, DECAY_SCALE) / DECAY_SCALE) ** dt
    return Stats(
        demand=keep * stats.demand + (1.0 - keep) * demand,
        io_rate=keep * stats.io_rate + (1.0 - keep) * rate,
        last=new,
        seconds=stats.seconds + dt,
    )


class StatsTable:
    """The statistics of the processes seen at the last rounds."""

    def __init__(self) -> None:
        self.by_pid: dict[int, Stats] = {}
        self.moved: set[int] = set()  # their counters include another node's past

    def update(self, pids_decays: dict[int, int], now: float | None = None) -> None:
        """Take a sample of each pid (with its decay); forget pids not listed."""
        for pid in list(self.by_pid):
            if pid not in pids_decays:
                del self.by_pid[pid]
        self.moved &= set(pids_decays)
        for pid, decay in pids_decays.items():
            new = sample(pid, now)
            if new is None:
                self.by_pid.pop(pid, None)
                continue
            lifetime = pid not in self.moved
            self.by_pid[pid] = fold(self.by_pid.get(pid, Stats()), new, decay, lifetime)

    def get(self, pid: int) -> Stats | None:
        """The statistics of ``pid`` once they cover an interval (None before)."""
        stats = self.by_pid.get(pid)
        return stats if stats is not None and stats.seconds > 0.0 else None

    def reset(self, pid: int) -> None:
        """Forget ``pid``'s history (it moved: the same pid now counts something else)."""
        self.by_pid.pop(pid, None)
        self.moved.add(pid)
