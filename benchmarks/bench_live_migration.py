"""Live migration (pre-copy rounds) against stop-and-copy, in the same run.

    python3 benchmarks/bench_live_migration.py [--mib 1024] [--rate 10] [--runs 3]
                                               [--name benchlive]

Brings up two 2-node test clusters (root): ``--name`` with the default
``[cluster] precopy_rounds`` (live migration) and ``--name``stop with
``precopy_rounds = 0`` (the process stopped for the whole copy, as before).  In each,
``cprogs/migmem.c`` with ``--mib`` MiB resident, writing ``--rate`` MiB/s of random
pages, is started under mosrun on node 1 and moved with ``migrate PID node2`` while it
runs: the total time (request to the agent's answer) and the downtime (the longest gap
in the program's own progress loop, checked to start during the migration); the program
checks that its memory is what it wrote.  Baseline, measured in the same run: the
image (its VmRSS) over the link's TCP bandwidth (``LocalCluster.bandwidth(1, 2)``).
Medians of ``--runs`` (best and worst shown).  The home agent's log line of each live
move (rounds, pages sent ahead, pages of the final image, the final pause) is shown, and
what it sent (those pages) against the program's VmRSS (``--rate 0``: an idle program,
which should send its memory once).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_cluster import AWAY, CFLAGS, HOME, Migration, migrate_once

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

HERE = Path(__file__).resolve().parent


def runs_in(cluster: LocalCluster, prog: str, a: argparse.Namespace) -> list[Migration]:
    return [migrate_once(cluster, prog, a.mib, a.rate) for _ in range(a.runs)]


def row(name: str, ms: list[Migration], floor: float) -> str:
    med = statistics.median
    total = [m.seconds for m in ms]
    down = [m.downtime for m in ms]
    return (
        f"| {name} | {med(down) * 1000:.0f} ms ({min(down) * 1000:.0f}-{max(down) * 1000:.0f}) "
        f"| {med(total) * 1000:.0f} ms ({min(total) * 1000:.0f}-{max(total) * 1000:.0f}) "
        f"| {med(total) / floor:.2f}x |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rate", type=float, default=10.0, help="MiB/s of pages written")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="benchlive")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-live-", dir="/var/tmp"))
    work.chmod(0o755)
    try:
        prog = str(work / "migmem")
        subprocess.run([*CFLAGS, "-o", prog, str(HERE / "cprogs" / "migmem.c")], check=True)
        with (
            LocalCluster(2, a.name, ClusterSettings()).up() as live,
            LocalCluster(2, a.name + "stop", ClusterSettings(precopy_rounds=0)).up() as stop,
        ):
            bandwidth = max(live.bandwidth(HOME, AWAY, 128 << 20) for _ in range(3))
            stopped = runs_in(stop, prog, a)
            moved = runs_in(live, prog, a)
            lines = re.findall(r"pre-copy rounds=.*", live.agent_log(HOME).read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rss = statistics.median(m.rss for m in moved + stopped)
    floor = rss / bandwidth
    print(
        f"{a.mib} MiB resident ({rss / 2**20:.0f} MiB VmRSS) writing {a.rate:g} MiB/s; "
        f"link 1 -> 2 {bandwidth / 1e6:.0f} MB/s: image / bandwidth {floor * 1000:.0f} ms; "
        f"medians of {a.runs} (min-max)"
    )
    print()
    print("| migration | downtime | total | total / (image / bandwidth) |")
    print("|---|---:|---:|---:|")
    print(row("stop-and-copy (precopy_rounds = 0)", stopped, floor))
    print(row("live (pre-copy rounds)", moved, floor))
    print()
    for line in lines:  # what each live move sent: the rounds' pages and the final image's
        sent = sum(map(int, re.findall(r"\b(?:pages|final_pages)=(\d+)", line))) * 4096
        print(f"    {line}")
        print(f"      sent {sent / 2**20:.1f} MiB, {sent / rss:.2f}x VmRSS")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)")
