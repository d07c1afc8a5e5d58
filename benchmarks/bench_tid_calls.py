"""What the thread id translation costs on the calls it traps; native baseline in the same run.

    python3 benchmarks/bench_tid_calls.py [--runs 3] [--name benchtids]

Brings up a 2-node test cluster (no automatic balancing; root).  ``cprogs/tid_calls.c``
times, in its second thread, sigprocmask (trapped by the translation whatever it
names), gettid through syscall(2) (trapped) and pthread_kill(main, 0) (glibc's
rt_sigprocmask, tgkill, rt_sigprocmask: all trapped), each for about 0.2 s per
line of stdin.  Measured at node 1: natively (the baseline), under mosrun before
any move (no translation yet), on node 2 after ``migrate PID node2`` (the map and
its filter, the forward filter on top) and at home after ``migrate PID home`` (the
map and its filter, the deputy's filters below).  Each number is the best of
``--runs`` lines; the ratio is against the native run of the same call.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

HERE = Path(__file__).resolve().parent
HOME = 1
TIMEOUT = 600
CALLS = ("sigprocmask", "gettid", "pthread_kill0")
Costs = dict[str, float]


def measure(proc: subprocess.Popen[str], runs: int) -> Costs:
    """The best of ``runs`` lines of the program's timings (ns per call)."""
    assert proc.stdin is not None and proc.stdout is not None
    best: Costs = {}
    for _ in range(runs):
        proc.stdin.write("x\n")
        proc.stdin.flush()
        words = proc.stdout.readline().split()
        if len(words) != 2 * len(CALLS) or tuple(words[0::2]) != CALLS:
            sys.exit(f"bench_tid_calls: unexpected output {words!r}")
        for name, value in zip(words[0::2], words[1::2], strict=True):
            best[name] = min(best.get(name, float("inf")), float(value))
    return best


def started(cluster: LocalCluster, argv: list[str]) -> subprocess.Popen[str]:
    proc = cluster.popen(
        HOME, argv, cwd="/tmp", stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != "ready\n":
        sys.exit(f"bench_tid_calls: {argv} did not start")
    return proc


def finished(proc: subprocess.Popen[str]) -> None:
    try:
        proc.communicate("", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def migrate(cluster: LocalCluster, pid: int, target: str) -> None:
    done = cluster.run(HOME, ["migrate", str(pid), target], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_tid_calls: migrate {pid} {target}: {done.stderr.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="lines per place (best kept)")
    ap.add_argument("--name", default="benchtids", help="the test cluster's name")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tids-", dir="/var/tmp"))
    work.chmod(0o755)
    try:
        prog = str(work / "tid_calls")
        subprocess.run(
            ["gcc", "-O2", "-pthread", "-o", prog, HERE / "cprogs" / "tid_calls.c"], check=True
        )
        with LocalCluster(2, a.name, ClusterSettings(balance_interval=0)).up() as cluster:
            plain = started(cluster, [prog])
            try:
                native = measure(plain, a.runs)
            finally:
                finished(plain)
            proc = started(cluster, ["mosrun", prog])
            try:
                rows = [("mosrun, home, never moved (no translation)", measure(proc, a.runs))]
                migrate(cluster, proc.pid, "node2")
                rows.append(("moved to node 2 (translated)", measure(proc, a.runs)))
                migrate(cluster, proc.pid, "home")
                rows.append(("back home (translated)", measure(proc, a.runs)))
            finally:
                finished(proc)
        print("| where | " + " | ".join(f"{c} (ratio)" for c in CALLS) + " |")
        print("|---|" + "---:|" * len(CALLS))
        print("| native | " + " | ".join(f"{native[c]:.0f} ns" for c in CALLS) + " |")
        for where, costs in rows:
            cells = (f"{costs[c]:.0f} ns ({costs[c] / native[c]:.1f}x)" for c in CALLS)
            print(f"| {where} | " + " | ".join(cells) + " |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
