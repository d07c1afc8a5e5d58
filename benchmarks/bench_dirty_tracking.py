"""Dirty-page tracking for live migration's pre-copy rounds, on this kernel.

    python3 benchmarks/bench_dirty_tracking.py [--mib 1024] [--rate 10] [--rounds 5]
                                               [--round-ms 100] [--runs 3]

This kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY off).  cprogs/dirtytrack.c
runs a program with ``--mib`` MiB of anonymous memory that writes ``--rate`` MiB/s of
random pages, and a tracker process (where mosix-ckpt would be) that finds the pages
it wrote every ``--round-ms``, ``--rounds`` times while it runs, then once with it
stopped (the stop-and-copy round), checked against the pages it really wrote:

* ``uffd``: userfaultfd write-protection with UFFD_FEATURE_WP_ASYNC (the kernel just
  clears the protection on a write, nothing waits) and one PAGEMAP_SCAN ioctl per
  round (PAGE_IS_WRITTEN, PM_SCAN_WP_MATCHING: reported and protected again at once);
* ``exclusive``: no kernel feature, the capture's own fork: after a fork, a page the
  program writes is copied and then mapped by it alone (pagemap bit 56); each round
  stops it, reads /proc/PID/pagemap and forks the next copy.

Baseline, measured in the same run: reading all its memory through /proc/PID/mem (what
one full round, or today's stop-and-copy, reads).  Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CFLAGS = ["gcc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]
METHODS = ("uffd", "exclusive")


def run_once(prog: Path, method: str, a: argparse.Namespace) -> dict[str, float]:
    argv = [str(prog), method, str(a.mib), str(a.rate), str(a.rounds), str(a.round_ms)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"dirtytrack {method} failed ({out.returncode}): {out.stdout}{out.stderr}")
    fields = dict(kv.split("=", 1) for kv in out.stdout.split())
    return {k: float(v) for k, v in fields.items() if k != "method"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-ms", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dirty-", dir="/var/tmp") as tmp:
        prog = Path(tmp) / "dirtytrack"
        subprocess.run(
            [*CFLAGS, "-o", str(prog), str(HERE / "cprogs" / "dirtytrack.c")], check=True
        )
        runs = {m: [run_once(prog, m, a) for _ in range(a.runs)] for m in METHODS}
    med = statistics.median
    copy = med(r["copy_ms"] for rs in runs.values() for r in rs)
    print(
        f"{a.mib} MiB writing {a.rate:g} MiB/s, {a.rounds} rounds of {a.round_ms} ms, "
        f"medians of {a.runs}; baseline: reading all of it (/proc/PID/mem) {copy:.0f} ms"
    )
    print(
        "| method | arming | a round while it runs | last round (stopped) "
        "| last / full read | pages written | reported | missed | its longest gap |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, rs in runs.items():
        last = med(r["scan_ms_last"] for r in rs)
        running = (
            "stopped each round"
            if m == "exclusive"
            else f"{med(r['scan_ms_max'] for r in rs):.2f} ms"
        )
        print(
            f"| {m} | {med(r['arm_ms'] for r in rs):.1f} ms | {running} | {last:.2f} ms "
            f"| {last / copy:.4f}x | {med(r['written'] for r in rs):.0f} "
            f"| {med(r['reported'] for r in rs):.0f} | {max(r['missed'] for r in rs):.0f} "
            f"| {med(r['gap_ms'] for r in rs):.2f} ms |"
        )


if __name__ == "__main__":
    main()
