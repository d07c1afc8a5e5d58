"""Load vectors: measuring this node's, and keeping the ones other nodes sent.

The load is the number of runnable tasks on this node, this agent excluded.
In the machine's initial network namespace that is /proc/stat's
procs_running; an agent in another network namespace (a node of the local
test cluster, where all nodes share one kernel) counts only the runnable tasks
of the processes in its namespace.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from mosix.native_names import Program
from mosix.protocol import LoadVector
from mosix.sysinfo import node_facts, proc_info

SAMPLES_PER_INTERVAL = 4
# Serving a migrated process's calls, not computing: in a test-cluster node (a CPU quota
# per node) they wait runnable behind its computing processes for up to a quota period
# after each call, and counting them would double a node's load in samples.
SERVICE = frozenset({Program.DEPUTY, Program.REMOTE})


def system_runnable(stat: str | None = None) -> int:
    """procs_running of /proc/stat, less the task reading it."""
    if stat is None:
        raw = proc_info.read_file(f"{proc_info.PROC}/stat")
        if raw is None:
            return 0
        stat = raw.decode()
    for line in stat.splitlines():
        if line.startswith("procs_running "):
            return max(int(line.split()[1]) - 1, 0)
    return 0


def runnable_tasks(pid: str) -> int:
    """How many threads of process ``pid`` are runnable (0 if it is gone)."""
    fields = proc_info.stat_fields(pid)
    if not fields:
        return 0
    if len(fields) > 17 and fields[17] == b"1":  # num_threads
        return int(fields[0] == b"R")
    try:
        tids = os.listdir(f"{proc_info.PROC}/{pid}/task")
    except OSError:
        return 0
    count = 0
    for tid in tids:
        task = proc_info.stat_fields(pid, tid)
        count += bool(task) and task[0] == b"R"
    return count


def namespace_runnable(own_ns: str) -> int:
    """Runnable tasks of the processes in network namespace ``own_ns``, ours excluded,
    and the deputies' and supervisors' (see SERVICE)."""
    me = str(os.getpid())
    count = 0
    for pid in os.listdir(proc_info.PROC):
        if not pid.isdigit() or pid == me or proc_info.net_namespace(pid) != own_ns:
            continue
        name = proc_info.comm(pid)
        if name is not None and name not in SERVICE:
            count += runnable_tasks(pid)
    return count


def runnable_here() -> int:
    """Runnable tasks on this node (see the module's text); may take milliseconds."""
    own_ns = proc_info.node_netns()
    return system_runnable() if own_ns is None else namespace_runnable(own_ns)


def measure(
    node: int,
    speed: float,
    procs: int,
    extra: dict[str, int | float | str],
    load: float | None = None,
) -> LoadVector:
    """This node's load vector now (blocking: reads /proc); ``load``: the mean of the
    samples taken since the last vector (None: one sample now)."""
    total, free = node_facts.memory_mb()
    return LoadVector(
        node=node,
        cpus=node_facts.cpu_count(),
        speed=speed,
        load=float(runnable_here()) if load is None else load,
        free_mb=free,
        total_mb=total,
        procs=procs,
        stamp=time.time(),
        extra=extra,
    )


class LoadSamples:
    """Runnable counts sampled SAMPLES_PER_INTERVAL times per load interval: a vector
    carries their mean, so a process that runs for a moment (a capture, a restore, a
    program's start) does not count as a whole process."""

    def __init__(self) -> None:
        self.taken: list[int] = []

    def add(self, count: int) -> None:
        self.taken.append(count)

    def mean(self) -> float | None:
        """The mean since the last call (None: no sample); starts over."""
        if not self.taken:
            return None
        value = sum(self.taken) / len(self.taken)
        self.taken = []
        return value


@dataclass
class LoadTable:
    """The last vector of each other node and when (monotonic) it arrived."""

    dead_after: float
    vectors: dict[int, LoadVector] = field(default_factory=dict)
    heard: dict[int, float] = field(default_factory=dict)
    up: set[int] = field(default_factory=set)  # nodes counted alive at the last check

    def record(self, vector: LoadVector, now: float) -> bool:
        """Keep ``vector``; True when its node was not counted alive before."""
        self.vectors[vector.node] = vector
        self.heard[vector.node] = now
        if vector.node in self.up:
            return False
        self.up.add(vector.node)
        return True

    def alive(self, node: int, now: float) -> bool:
        heard = self.heard.get(node)
        return heard is not None and now - heard <= self.dead_after

    def expire(self, now: float) -> list[int]:
        """Nodes that were alive and are not any more."""
        gone = [n for n in self.up if not self.alive(n, now)]
        self.up.difference_update(gone)
        return sorted(gone)

    def fresh(self, now: float) -> dict[int, LoadVector]:
        return {n: v for n, v in self.vectors.items() if self.alive(n, now)}

    def age(self, node: int, now: float) -> float | None:
        heard = self.heard.get(node)
        return None if heard is None else now - heard
