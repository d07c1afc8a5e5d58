"""mosrun -X away: calls on a private file served where the process runs, against the
same calls on a home file forwarded to the deputy, measured in the same run.

    python3 benchmarks/bench_private_away.py [--calls 2000] [--rounds 5] [--runs 3] [--name bpx]
                                             [--watched]

Brings up a 2-node test cluster (mosix.testcluster.LocalCluster, root) and runs
``cprogs/fwd_calls.c`` (64-byte write()s and read()s of one file, open()+close()
pairs of it) under ``mosrun -X/tmp/bpx -L -rnode2``, so that it runs on node 2,
twice: on ``/tmp/bpx/f``, a file of its private directory (the open served by the
copy's supervisor on node 2, the descriptor the copy's own: its reads and writes
run in the copy), and on ``/tmp/bpx-home.dat``, a home file (every call forwarded
to the deputy on node 1 through the supervisor: a process with -X directories
has no fast path).  The second is the baseline.  Each number is the best over
``--runs`` runs of the best round inside a run; the medians are printed too.
With ``--watched``, the private file also with the administrator's away maximum
watched by the supervisor (node 1's agent restarted with ``[private]`` limits, so
that mosix-remote gets -W: an inotify event per write or close, an fstatfs each),
against the same without it, in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_cluster import AWAY, CALLS, HOME, TIMEOUT, build, checked, parse_timings

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings
from mosix.testcluster.layout import CONFIG_PATH

PRIVATE = "/tmp/bpx"
HOME_FILE = "/tmp/bpx-home.dat"
LIMITS = "[private]\nhome_mb = 2048\ncluster_mb = 1024\n"  # never reached: only watched


def set_limits(cluster: LocalCluster, watched: bool) -> None:
    """Node 1's agent with (or without) the [private] limits of ``LIMITS``."""
    config = cluster.node_path(HOME, CONFIG_PATH)
    text = config.read_text().split("[private]")[0]
    config.write_text(text + (LIMITS if watched else ""))
    cluster.restart_agent(HOME)
    deadline = time.monotonic() + 30  # until it has heard of node 2 again
    while cluster.run(HOME, ["mosrun", f"-rnode{AWAY}", "true"], capture_output=True).returncode:
        if time.monotonic() > deadline:
            sys.exit("bench_private_away: node 2 not seen by node 1's new agent in 30 s")
        time.sleep(0.2)


def run(
    cluster: LocalCluster, prog: str, path: str, calls: int, rounds: int
) -> dict[str, tuple[float, float]]:
    argv = ["mosrun", f"-X{PRIVATE}", "-L", f"-rnode{AWAY}", prog, path, str(calls), str(rounds)]
    result = cluster.run(HOME, argv, cwd="/tmp", capture_output=True, text=True, timeout=TIMEOUT)
    times, _ = parse_timings(checked(result, " ".join(argv)))
    if set(times) != set(CALLS):
        sys.exit(f"bench_private_away: fwd_calls printed {result.stdout!r}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="calls of each kind per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per run (best kept)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each case (best kept)")
    ap.add_argument("--name", default="bpx", help="the test cluster's name")
    ap.add_argument("--watched", action="store_true", help="also with the away maximum watched")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-private-away-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    try:
        progs = build(work)
        with LocalCluster(2, a.name, ClusterSettings()).up() as cluster:
            for node in (HOME, AWAY):
                cluster.node_path(node, PRIVATE).mkdir()
            best: dict[str, dict[str, tuple[float, float]]] = {"private": {}, "home": {}}
            cases = [("private", f"{PRIVATE}/f"), ("home", HOME_FILE)]
            if a.watched:
                best["watched"] = {}
                cases.append(("watched", f"{PRIVATE}/f"))
            watching = False
            for _ in range(a.runs):  # interleaved: the machine is shared
                for case, path in cases:
                    if a.watched and watching != (case == "watched"):
                        watching = case == "watched"
                        set_limits(cluster, watching)
                    for call, (b, m) in run(cluster, progs.calls, path, a.calls, a.rounds).items():
                        old = best[case].get(call)
                        best[case][call] = (b, m) if old is None or b < old[0] else old
        columns = (
            "call (ns, best / median)",
            "home file, forwarded",
            "private, on node 2",
            "ratio",
        )
        print("| " + " | ".join(columns) + " |")
        print("|---|---|---|---|")
        for call in CALLS:
            (hb, hm), (pb, pm) = best["home"][call], best["private"][call]
            print(f"| {call} | {hb:.0f} / {hm:.0f} | {pb:.0f} / {pm:.0f} | {pb / hb:.3f}x |")
        if a.watched:
            print("\n| call (ns, best / median) | private | private, watched | ratio |")
            print("|---|---|---|---|")
            for call in CALLS:
                (pb, pm), (wb, wm) = best["private"][call], best["watched"][call]
                print(f"| {call} | {pb:.0f} / {pm:.0f} | {wb:.0f} / {wm:.0f} | {wb / pb:.3f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
