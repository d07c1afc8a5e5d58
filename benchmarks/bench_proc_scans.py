"""The agents' /proc scans, before and after the readers worked on bytes.

    python3 benchmarks/bench_proc_scans.py [--rounds 9] [--processes 400] [--before-rev 1bbcf03]

Three scans of every process of the node, each timed three ways in the same run
(rounds interleaved, medians):

* before: mosix/sysinfo/proc_info.py and mosix/cluster/load_vectors.py as they were
  at ``--before-rev`` (pathlib paths, text decoding, whole files split), read from git;
* after: the modules of this tree;
* floor: what any version, compiled or not, still pays: listing /proc and opening,
  reading and closing the same files from Python (``os.open``/``os.read``/``os.close``,
  ``os.readlink`` for the namespace).

The scans: the registry's discovery (every pid: MOSIX_INHERIT, real uid), the load
vector's namespace case (every pid: its namespace, comm, stat) and a guard's tree
(every pid: status's PPid, ids, NoNewPrivs, Seccomp).  Ratios are against the floor.
``--processes`` sleeping processes are started first so the scans have something
to scan.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from mosix.cluster import load_vectors  # noqa: E402
from mosix.home_agent.guard_watch import TREE_FIELDS  # noqa: E402
from mosix.sysinfo import proc_info  # noqa: E402

Scan = Callable[[], object]


def old_module(rev: str, path: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(Path(path).stem + "_before")
    sys.modules[module.__name__] = module  # its dataclasses look themselves up there
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def registry_scan(info: types.ModuleType) -> Scan:
    """Registry.discover's loop over /proc (mosix/home_agent/registry.py)."""

    def scan() -> int:
        n = 0
        for pid in info.pids():
            words, uid = info.inherited_words(pid), info.real_uid(pid)
            n += words is not None and uid is not None
        return n

    return scan


def guard_scan(info: types.ModuleType, names: tuple[str, ...] | None) -> Scan:
    """GuardWatch.tree's loop over /proc (mosix/home_agent/guard_watch.py)."""

    def scan() -> int:
        n = 0
        for pid in info.pids():
            fields = info.status_fields(pid) if names is None else info.status_fields(pid, names)
            n += fields is not None and "PPid" in fields
        return n

    return scan


def read_floor(names: list[str], link: str | None = None) -> Scan:
    def scan() -> int:
        n = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            if link is not None:
                with contextlib.suppress(OSError):
                    n += len(os.readlink(f"/proc/{pid}/{link}"))
            for name in names:
                try:
                    fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    n += len(os.read(fd, 65536))
                os.close(fd)
        return n

    return scan


def medians(ways: dict[str, Scan], rounds: int) -> dict[str, float]:
    """Each way's median time in ms, the ways taking turns in every round."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, fn in ways.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--processes", type=int, default=400)
    parser.add_argument("--before-rev", default="1bbcf03")  # the last with the pathlib readers
    args = parser.parse_args()
    old_info = old_module(args.before_rev, "mosix/sysinfo/proc_info.py")
    old_loads = old_module(args.before_rev, "mosix/cluster/load_vectors.py")
    own = os.readlink("/proc/self/ns/net")
    scans: dict[str, dict[str, Scan]] = {
        "registry discovery (environ, status)": {
            "before": registry_scan(old_info),
            "after": registry_scan(proc_info),
            "floor": read_floor(["environ", "status"]),
        },
        "load vector, namespace case (ns/net, comm, stat)": {
            "before": lambda: old_loads.namespace_runnable(own),
            "after": lambda: load_vectors.namespace_runnable(own),
            "floor": read_floor(["comm", "stat"], link="ns/net"),
        },
        "guard tree (status)": {
            "before": guard_scan(old_info, None),
            "after": guard_scan(proc_info, TREE_FIELDS),
            "floor": read_floor(["status"]),
        },
    }
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(args.processes)]
    try:
        count = len(proc_info.pids())
        print(f"{count} processes, medians of {args.rounds} rounds (ms; x: times the floor)")
        for what, ways in scans.items():
            m = medians(ways, args.rounds)
            floor = m["floor"]
            print(
                f"{what}: before {m['before']:.1f} (x{m['before'] / floor:.2f}), "
                f"after {m['after']:.1f} (x{m['after'] / floor:.2f}), floor {floor:.1f}"
            )
    finally:
        for s in sleepers:
            s.kill()
            s.wait()


if __name__ == "__main__":
    main()
