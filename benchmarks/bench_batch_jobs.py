"""What a batch job's standard streams cost: ``mosrun -E`` carries them through both agents.

    python3 benchmarks/bench_batch_jobs.py [--mb 100] [--rounds 3]   (as root)

Brings up a 2-node test cluster and, from node 1, measures (best of ``--rounds``):
* output: ``mosrun -E -2 dd if=/dev/zero bs=1M count=MB`` into ``wc -c``;
* input: ``dd ... | mosrun -E -2 wc -c``;
* start and end: ``mosrun -E -2 true``;
against baselines measured in the same run: TCP between the two nodes
(``LocalCluster.bandwidth``) and the same ``dd`` piped into ``wc -c`` on node 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from mosix.testcluster import LocalCluster  # noqa: E402


def best(cluster: LocalCluster, script: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        cluster.run(1, ["sh", "-c", script], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    dd = f"dd if=/dev/zero bs=1M count={a.mb} 2>/dev/null"
    with LocalCluster(2, "benchbatch").up() as cluster:
        tcp = cluster.bandwidth(1, 2) / 1e6
        local = best(cluster, f"{dd} | wc -c", a.rounds)
        start = best(cluster, "mosrun -E -2 true", a.rounds)
        out = best(cluster, f"mosrun -E -2 {dd} | wc -c", a.rounds)
        into = best(cluster, f"{dd} | mosrun -E -2 wc -c", a.rounds)
    print(f"TCP node 1 -> node 2: {tcp:.0f} MB/s")
    print(f"{a.mb} MB dd | wc -c on node 1: {local:.2f} s ({a.mb / local:.0f} MB/s)")
    print(f"mosrun -E -2 true: {start * 1000:.0f} ms")
    for what, seconds in (("output (job -> caller)", out), ("input (caller -> job)", into)):
        rate = a.mb / (seconds - start)
        print(
            f"{what}: {seconds:.2f} s, {rate:.0f} MB/s without start-up"
            f" ({seconds / local:.1f}x local pipe, {tcp / rate:.1f}x below TCP)"
        )


if __name__ == "__main__":
    main()
