"""Benchmark mosrun -S against xargs -P and GNU parallel on many cheap lines.

    pip install . && python3 benchmarks/bench_batches.py [--lines 10000] [--jobs 2] [--rounds 3]

Every tool runs the same lines, rounds interleaved (so a noisy neighbour hits
all of them alike); the table gives the best and the median wall time of each
and mosrun's throughput relative to each baseline (above 1: mosrun is faster).

- mosrun -S{jobs} FILE: each line through bash, under the discipline
- the -S runner started directly, without the discipline (isolates its cost)
- xargs -d '\\n' -n1 -P{jobs} bash -c < FILE: the same lines through bash
- xargs -n1 -P{jobs} true: no shell at all (the floor for one process a line)
- parallel -j{jobs} < FILE: GNU parallel (installed with apt-get if missing
  and allowed; otherwise that column is skipped with a note)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tool:
    name: str
    argv: list[str]
    stdin: Path | None
    times: list[float] = field(default_factory=list)

    def run(self) -> None:
        start = time.perf_counter()
        with open(self.stdin or os.devnull, "rb") as f:
            result = subprocess.run(self.argv, stdin=f, capture_output=True)
        self.times.append(time.perf_counter() - start)
        if result.returncode != 0:
            sys.exit(f"{self.name} failed ({result.returncode}): {result.stderr.decode()[-500:]}")


def mosrun_path() -> str:
    """The installed mosrun script itself (not a version manager's shim in front of it)."""
    beside = Path(sys.executable).parent / "mosrun"
    found = str(beside) if beside.exists() else shutil.which("mosrun")
    if not found:
        sys.exit("mosrun is not installed: pip install .")
    return found


def find_parallel(install: bool, say: Callable[[str], None]) -> str | None:
    found = shutil.which("parallel")
    if found or not install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    say("installing GNU parallel with apt-get ...")
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "parallel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return shutil.which("parallel")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--line", default="true", help="the command on every line")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install parallel")
    ap.add_argument("--no-parallel", action="store_true", help="skip GNU parallel")
    opts = ap.parse_args()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        cmds = Path(tmp) / "commands"
        cmds.write_text(f"{opts.line}\n" * opts.lines)
        words = Path(tmp) / "words"
        words.write_text("x\n" * opts.lines)
        j = str(opts.jobs)
        tools = [
            Tool(f"mosrun -S{j}", [mosrun_path(), f"-S{j}", str(cmds)], None),
            Tool(
                f"xargs -P{j} bash -c", ["xargs", "-d", "\n", "-n1", f"-P{j}", "bash", "-c"], cmds
            ),
            Tool(f"xargs -P{j} {opts.line} (no shell)", ["xargs", "-n1", f"-P{j}", "true"], words),
        ]
        if opts.line != "true":
            tools.pop()
        # the same runner started directly: what the discipline costs per line
        direct = (
            "import os, sys; from mosix.mosrun.batches.runner import main; "
            "fd = os.open(sys.argv[2], os.O_RDONLY); "
            "main(['mosrun', sys.argv[1], str(fd), sys.argv[2], '-', '', '-'])"
        )
        tools.insert(
            1,
            Tool(
                "(-S runner without the discipline)",
                [sys.executable, "-c", direct, j, str(cmds)],
                None,
            ),
        )
        parallel = None if opts.no_parallel else find_parallel(not opts.no_install, say)
        if parallel:
            tools.append(Tool(f"parallel -j{j}", [parallel, "--will-cite", f"-j{j}"], cmds))
        else:
            notes.append("GNU parallel: not available (skipped)")
        for r in range(opts.rounds):
            for tool in tools:
                say(f"round {r + 1}/{opts.rounds}: {tool.name}")
                tool.run()

    mine = min(tools[0].times)
    print(f"\n{opts.lines} lines of '{opts.line}', {opts.jobs} at a time, {opts.rounds} rounds")
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}\n")
    print("| tool | best s | median s | lines/s (best) | mosrun -S throughput ratio |")
    print("|---|---:|---:|---:|---:|")
    for tool in tools:
        best = min(tool.times)
        ratio = "1.00" if tool is tools[0] else f"{best / mine:.2f}x"
        median = statistics.median(tool.times)
        rate = opts.lines / best
        print(f"| {tool.name} | {best:.2f} | {median:.2f} | {rate:.0f} | {ratio} |")
    for note in notes:
        print(f"\nNote: {note}")


if __name__ == "__main__":
    main()
