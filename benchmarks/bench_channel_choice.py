"""Which shape of the fast path lets home serve threads at once (issue 16, stage 2).

    python3 benchmarks/bench_channel_choice.py [--runs 5] [--calls 20000]

A model, not the cluster: ``cprogs/channel_choice.c`` makes forwarded-call-sized
round trips over loopback TCP (64 bytes out, a write to /dev/null at "home", 8
bytes back) from 1, 2 and 4 threads at once, in two shapes:

- ``perthread``: a connection per thread, each served by a home thread of its own;
- ``shared``: one connection, requests sent under a lock, replies matched by id
  (the thread reading hands the others' replies over), a pool of workers at home.

Total calls per second, best of ``--runs``, each against ``perthread`` with one
thread measured in the same run (today's single-threaded fast path).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def calls_per_s(prog: str, mode: str, threads: int, calls: int) -> float:
    done = subprocess.run(
        [prog, mode, str(threads), str(calls)], capture_output=True, text=True, timeout=600
    )
    words = done.stdout.split()
    if done.returncode != 0 or words[:1] != ["calls_per_s"]:
        sys.exit(f"bench_channel_choice: {mode} {threads}: {done.stderr.strip()}")
    return float(words[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each measurement (best kept)")
    ap.add_argument("--calls", type=int, default=20000, help="round trips per thread")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        prog = str(Path(work) / "channel_choice")
        subprocess.run(
            ["gcc", "-O2", "-pthread", "-o", prog, str(HERE / "cprogs" / "channel_choice.c")],
            check=True,
        )
        best: dict[tuple[str, int], float] = {}
        for _ in range(args.runs):  # interleaved: a busy moment hits every shape alike
            for mode in ("perthread", "shared"):
                for threads in (1, 2, 4):
                    rate = calls_per_s(prog, mode, threads, args.calls)
                    best[mode, threads] = max(best.get((mode, threads), 0.0), rate)
    base = best["perthread", 1]
    print("| shape | threads | calls/s | / perthread 1 thread |")
    print("|---|---:|---:|---:|")
    for (mode, threads), rate in best.items():
        print(f"| {mode} | {threads} | {rate:,.0f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
