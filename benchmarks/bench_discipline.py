"""Cost of the MOSIX discipline (seccomp filters, guard, preload shim), with baselines.

    python3 benchmarks/bench_discipline.py [--calls 2000000] [--rounds 5]

Runs the installed ``mosrun`` and compares, in the same run:

* a system-call-heavy loop (getppid; 1-byte reads from /dev/zero) natively and under
  mosrun, dynamic and static (target: at most +5%), and the floor: the same loop under
  a one-instruction allow-all filter (what the kernel charges for any seccomp filter);
* an unsupported call under -e: dynamic (the shim's filter answers ENOSYS in the
  kernel) and static (the guard answers a user notification), against a plain call;
* the SIGSYS path (the shim traps kill(SIGSTOP) and re-sends SIGTSTP) against a plain
  kill(SIGTSTP);
* start-up: ``mosrun true`` against ``true``, ``python3 -c pass`` (the floor of any
  Python command) and the C launcher alone;
* how many shim filters a deep exec chain stacks before the kernel's limit.

Each number is the best of ``--rounds`` runs (the least disturbed by the VM).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE_SOURCE = HERE.parent / "tests" / "cprogs" / "probe.c"
CFLAGS = ["-O2", "-pthread"]


def build(directory: Path) -> tuple[str, str]:
    dynamic, static = directory / "probe", directory / "probe-static"
    subprocess.run(["gcc", *CFLAGS, "-o", dynamic, PROBE_SOURCE], check=True)
    subprocess.run(["gcc", *CFLAGS, "-static", "-o", static, PROBE_SOURCE], check=True)
    return str(dynamic), str(static)


def per_call(argv: list[str], rounds: int, env: dict[str, str] | None = None) -> float:
    """Best ns/call the probe reports over ``rounds`` runs."""
    best = float("inf")
    for _ in range(rounds):
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
        best = min(best, float(re.search(r"([0-9.]+) ns/call", out.stdout).group(1)))  # type: ignore[union-attr]
    return best


def startup(argv: list[str], rounds: int) -> float:
    """Median wall time of ``argv`` in ms (``rounds`` * 4 runs, after one warm-up)."""
    subprocess.run(argv, check=True)
    times = []
    for _ in range(rounds * 4):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def native_dir(mosrun: str) -> Path:
    first = Path(mosrun).read_text(errors="replace").splitlines()[0]
    python = first[2:].strip().split()[0] if first.startswith("#!") else sys.executable
    out = subprocess.run(
        [python, "-c", "import mosix.native as n; print(n.NATIVE_DIR)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def filters_at_depth(mosrun: str, mode: str, probe: str, depth: int) -> int:
    out = subprocess.run(
        [mosrun, mode, probe, "execchain", str(depth), "raw-personality"],
        capture_output=True,
        text=True,
    )
    return int(re.search(r"Seccomp_filters:\s+(\d+)", out.stdout).group(1))  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    mosrun = shutil.which("mosrun")
    if mosrun is None:
        print("bench_discipline: mosrun is not installed (pip install .)", file=sys.stderr)
        return 1
    n, r = str(ns.calls), ns.rounds
    few = str(max(ns.calls // 100, 1000))  # for the slow paths
    rows: list[tuple[str, str, float, str, float]] = []

    def row(what: str, base_name: str, base: float, name: str, value: float) -> None:
        rows.append((what, base_name, base, name, value))

    with tempfile.TemporaryDirectory() as tmp:
        dyn, sta = build(Path(tmp))
        plain = per_call([dyn, "loop", n], r)
        row(
            "getppid under any filter (1-insn allow-all)",
            "native ns",
            plain,
            "ns",
            per_call([dyn, "floor", n], r),
        )
        for label, prog in (("dynamic", dyn), ("static", sta)):
            for loop in ("loop", "loop-read"):
                call = "getppid" if loop == "loop" else "read(/dev/zero, 1)"
                native = per_call([prog, loop, n], r)
                under = per_call([mosrun, prog, loop, n], r)
                row(f"{call}, {label}", "native ns", native, "mosrun ns", under)
        row(
            "unsupported call -e, dynamic (shim filter: ERRNO)",
            "getppid ns",
            plain,
            "ns",
            per_call([mosrun, "-e", dyn, "trap", n], r),
        )
        row(
            "unsupported call -e, static (guard: user notif)",
            "getppid ns",
            plain,
            "ns",
            per_call([mosrun, "-e", sta, "trap", few], r),
        )
        env = {**os.environ, "PROBE_NATIVE": "1"}
        row(
            "kill(SIGSTOP) -> SIGTSTP (shim: SIGSYS trap)",
            "kill(SIGTSTP) ns",
            per_call([dyn, "stop-loop", few], r, env=env),
            "ns",
            per_call([mosrun, dyn, "stop-loop", few], r),
        )
        true = shutil.which("true") or "/bin/true"
        launcher = str(native_dir(mosrun) / "mosix-exec")
        t_true = startup([true], r)
        row(
            "start-up: python3 -c pass",
            "true ms",
            t_true,
            "ms",
            startup(["python3", "-c", "pass"], r),
        )
        row(
            "start-up: C launcher alone (guard, filter, exec)",
            "true ms",
            t_true,
            "ms",
            startup([launcher, "-m", "u", "-p", "bench", "--", true, "true"], r),
        )
        row("start-up: mosrun true", "true ms", t_true, "ms", startup([mosrun, true], r))
        depth = {m: filters_at_depth(mosrun, m, dyn, 400) for m in ("-u", "-e")}

    width = max(len(w) for w, *_ in rows)
    print(f"{'measurement':<{width}}  {'baseline':>22}  {'mosrun':>16}  {'ratio':>7}")
    for what, base_name, base, name, value in rows:
        print(
            f"{what:<{width}}  {base:>12.1f} {base_name:<9}  {value:>10.1f} {name:<5}  "
            f"{value / base:>6.2f}x"
        )
    print(
        f"filters stacked by an exec chain of 400 dynamic programs: -u {depth['-u']}, "
        f"-e {depth['-e']} (the kernel's limit is 32768 instructions per path; past it "
        "a shim keeps its handler and the base filter and guard carry on)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
