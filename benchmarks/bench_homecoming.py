"""Coming home, and what checking the image first costs; baselines measured in the same run.

    python3 benchmarks/bench_homecoming.py [--runs 3] [--mib 10,100,512] [--name benchhome]

Brings up a 2-node test cluster (no automatic balancing; root).  For each size,
``cprogs/migmem.c`` with that many MiB resident is started on node 1 under
``mosrun -C``, checkpointed there (``migrate PID checkpoint``: an image of the
same size, for the check below), moved to node 2 and brought home with
``migrate PID home``, timed inside node 1 (request to answer).  The deputy takes
the image whole into a memory file and has the restorer check it (``mosix-restore
-c``) before it restores it in place; the check's own time is measured in the same
run on the checkpoint file (``mosix-restore -c``, best of ``--runs``), and so is
the image's floor, its size over ``LocalCluster.bandwidth(2, 1)``.  Reported:
the home-coming, the check, and the check's share of the home-coming.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mosix.native import native_path
from mosix.native_names import Program
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

HERE = Path(__file__).resolve().parent
HOME, AWAY = 1, 2
TIMEOUT = 600
MOVE = """
import sys, time
from mosix.tools.migrate import move
t0 = time.monotonic()
ok = move(int(sys.argv[1]), sys.argv[2])
print(time.monotonic() - t0, int(ok), flush=True)
"""


def timed_move(cluster: LocalCluster, pid: int, target: str) -> float:
    done = cluster.run(
        HOME, [sys.executable, "-c", MOVE, str(pid), target], capture_output=True, text=True
    )
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 2 or words[1] != "1":
        sys.exit(f"bench_homecoming: migrate {pid} {target}: {done.stderr.strip()}")
    return float(words[0])


def check_time(image: Path) -> float:
    """Seconds mosix-restore -c takes to read and verify the image (from the page cache)."""
    fd = os.open(image, os.O_RDONLY)
    try:
        started = time.monotonic()
        done = subprocess.run(
            [native_path(Program.RESTORER), "-c", str(fd)], pass_fds=(fd,), capture_output=True
        )
        took = time.monotonic() - started
    finally:
        os.close(fd)
    if done.returncode != 0:
        sys.exit(f"bench_homecoming: mosix-restore -c {image}: {done.stderr.decode().strip()}")
    return took


def one_size(cluster: LocalCluster, prog: str, mib: int, runs: int) -> tuple[int, float, float]:
    """(image bytes, best home-coming seconds, best check seconds) for ``mib``."""
    homecomings, checks, size = [], [], 0
    for run in range(runs):
        ck = f"/tmp/benchhome-{mib}-{run}"
        proc = cluster.popen(
            HOME,
            ["mosrun", f"-C{ck}", prog, str(mib)],
            cwd="/tmp",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            if not proc.stdout.readline().startswith("ready "):
                sys.exit(f"bench_homecoming: migmem {mib} did not start")
            taken = cluster.run(
                HOME, ["migrate", str(proc.pid), "checkpoint"], capture_output=True, text=True
            )
            if taken.returncode != 0:
                sys.exit(f"bench_homecoming: checkpoint of migmem {mib}: {taken.stderr.strip()}")
            timed_move(cluster, proc.pid, f"node{AWAY}")
            homecomings.append(timed_move(cluster, proc.pid, "home"))
            os.kill(proc.pid, signal.SIGUSR1)
            proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        image = cluster.node_path(HOME, f"{ck}.1")
        size = image.stat().st_size
        checks.append(check_time(image))
        image.unlink()
    return size, min(homecomings), min(checks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each size (best kept)")
    ap.add_argument("--mib", default="10,100,512", help="resident sizes, MiB")
    ap.add_argument("--name", default="benchhome", help="the test cluster's name")
    a = ap.parse_args()
    sizes = [int(x) for x in a.mib.split(",") if x]
    work = Path(tempfile.mkdtemp(prefix="bench-homecoming-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    try:
        prog = str(work / "migmem")
        subprocess.run(["gcc", "-O2", "-o", prog, HERE / "cprogs" / "migmem.c"], check=True)
        settings = ClusterSettings(balance_interval=0)
        with LocalCluster(2, a.name, settings).up() as cluster:
            bandwidth = max(cluster.bandwidth(AWAY, HOME, 128 << 20) for _ in range(a.runs))
            print(
                f"link {AWAY} -> {HOME}: {bandwidth / 1e6:.0f} MB/s (TCP, measured in this run)\n"
            )
            columns = ("resident", "image", "image / bandwidth", "home-coming", "check (-c)")
            print("| " + " | ".join(columns) + " | check / home-coming |")
            print("|---|---:|---:|---:|---:|---:|")
            for mib in sizes:
                size, home, check = one_size(cluster, prog, mib, a.runs)
                print(
                    f"| {mib} MiB | {size / 2**20:.0f} MiB | {size / bandwidth * 1000:.0f} ms "
                    f"| {home * 1000:.0f} ms | {check * 1000:.0f} ms | {check / home:.0%} |",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
