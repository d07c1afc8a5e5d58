"""Benchmark automatic load balancing: N CPU-bound jobs started on one node of a
3-node test cluster, against the ideal N/3 makespan.

    pip install . && python3 benchmarks/bench_balancing.py [--jobs 6] [--seconds 10]

The test cluster gives each node 0.6 of a processor (a cgroup per node, see
mosix.testcluster.cpu_limit), so its three nodes behave like three small
machines on a 2-processor host.  Measured in the same run, on node 1:

- one job alone, native (no mosrun): T1, the unit of everything else;
- xargs -P N: the N jobs native on node 1 at once (what one node does alone);
- N x mosrun job started at once on node 1: the agents spread them.

The ideal makespan is ceil(N/3) x T1 (every node busy, no migration cost);
the target is mosrun <= 1.2 x ideal.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mosix.testcluster import LocalCluster

HERE = Path(__file__).parent
NODES = 3
CPUS = 0.6  # each node's share of the processors


def build(directory: Path) -> str:
    exe = directory / "cpujob"
    subprocess.run(["gcc", "-O0", "-o", str(exe), str(HERE / "cprogs" / "cpujob.c")], check=True)
    return str(exe)


def timed(cluster: LocalCluster, argvs: list[list[str]]) -> float:
    """Start every command inside node 1 at once; seconds until the last ends."""
    start = time.perf_counter()
    procs = [
        cluster.popen(1, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv in argvs
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"{' '.join(p.args[-2:])} failed ({p.returncode}): {err.strip()[-300:]}")
    return time.perf_counter() - start


def rounds_for(cluster: LocalCluster, job: str, seconds: float) -> int:
    """Rounds that take about ``seconds`` on one node alone."""
    probe = 20
    took = timed(cluster, [[job, str(probe)]])
    return max(int(probe * seconds / took), 1)


def moves_of(cluster: LocalCluster) -> int:
    out = cluster.run(1, ["mosctl", "status"], capture_output=True, text=True).stdout
    found = re.search(r"balancing:\s+\d+ rounds, (\d+) moves", out)
    return int(found.group(1)) if found else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="T1, one job alone")
    parser.add_argument("--no-xargs", action="store_true", help="skip the xargs -P baseline")
    parser.add_argument("--log", action="store_true", help="print node 1's agent log at the end")
    options = parser.parse_args()
    n = options.jobs
    directory = Path(tempfile.mkdtemp(prefix="mosix-bench-bal-", dir="/var/tmp"))
    cluster = LocalCluster(NODES, "benchbal", cpus=CPUS)
    try:
        job = build(directory)
        cluster.up()
        rounds = rounds_for(cluster, job, options.seconds)
        t1 = timed(cluster, [[job, str(rounds)]])
        ideal = math.ceil(n / NODES) * t1
        xargs = None
        if not options.no_xargs:
            xargs = timed(
                cluster,
                [["sh", "-c", f"seq {n} | xargs -P {n} -I{{}} {job} {rounds} >/dev/null"]],
            )
        before = moves_of(cluster)
        balanced = timed(cluster, [["mosrun", job, str(rounds)] for _ in range(n)])
        moves = moves_of(cluster) - before
        if options.log:
            print(cluster.agent_log(1).read_text())
    finally:
        cluster.down()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"{n} jobs of {rounds} rounds; {NODES} nodes of {CPUS} processor each")
    print(f"{'measurement':<44} {'seconds':>8} {'x ideal':>8}")
    print(f"{'one job alone, native (T1)':<44} {t1:8.1f}")
    print(f"{'ideal: ceil(N/3) x T1':<44} {ideal:8.1f} {1.0:8.2f}")
    if xargs is not None:
        print(f"{f'xargs -P {n}, native, all on node 1':<44} {xargs:8.1f} {xargs / ideal:8.2f}")
    label = f"{n} x mosrun on node 1, balanced ({moves} moves)"
    print(f"{label:<44} {balanced:8.1f} {balanced / ideal:8.2f}")
    verdict = "met" if balanced <= 1.2 * ideal else "MISSED"
    print(f"target mosrun <= 1.2 x ideal: {verdict}")


if __name__ == "__main__":
    main()
