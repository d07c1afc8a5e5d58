"""Freezing and continuing, against a checkpoint of the same process in the same run.

    python3 benchmarks/bench_freeze.py [--mib 256] [--rounds 3] [--dir /var/tmp]

A program with ``--mib`` MiB of touched memory (cprogs/bigmem.c) runs under
mosrun with a private agent; each round times, as the user sees them:

* ``migrate PID checkpoint`` (baseline: the image written to a file, the
  process running on);
* ``migrate PID freeze`` (the image written, then the process becomes its
  deputy: it holds no memory of the program; its resident size is shown);
* ``migrate PID continue`` (the restorer in place, from the file), against
  ``mosrun -R`` of the checkpoint (a new process from the same kind of file).

Medians of ``--rounds``; the program's answer proves its memory came back.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_agent import rss_mb as rss_mib  # one agent start, one VmRSS reader
from bench_agent import start_agent

HERE = Path(__file__).resolve().parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-freeze-", dir=a.dir))
    prog = base / "bigmem"
    subprocess.run(["gcc", "-O2", "-o", prog, HERE / "cprogs" / "bigmem.c"], check=True)
    agent, env = start_agent(base)
    env["FREEZE_DIR"] = str(base)
    ckpt, freeze, cont, recover, rss_before, rss_frozen = [], [], [], [], [], []
    try:
        for n in range(a.rounds):
            argv = ["mosrun", f"-C{base}/ck{n}", str(prog), str(a.mib)]
            p = subprocess.Popen(
                argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
            rss_before.append(rss_mib(p.pid))
            ckpt.append(timed(["migrate", str(p.pid), "checkpoint"], env))
            freeze.append(timed(["migrate", str(p.pid), "freeze"], env))
            rss_frozen.append(rss_mib(p.pid))
            cont.append(timed(["migrate", str(p.pid), "continue"], env))
            expected, _ = p.communicate("x", timeout=300)
            began = time.perf_counter()
            got = subprocess.run(
                ["mosrun", f"-R{base}/ck{n}.1"], env=env, input="x", capture_output=True, text=True
            )
            recover.append(time.perf_counter() - began)
            assert got.stdout == expected and expected.startswith("ok "), (got, expected)
    finally:
        agent.terminate()
        agent.wait()
        shutil.rmtree(base, ignore_errors=True)
    med = statistics.median
    print(f"| what ({a.mib} MiB touched, medians of {a.rounds}) | baseline | freezing | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| migrate freeze vs migrate checkpoint | {med(ckpt) * 1000:.0f} ms "
        f"| {med(freeze) * 1000:.0f} ms | {med(freeze) / med(ckpt):.2f}x |"
    )
    print(
        f"| migrate continue vs mosrun -R (same image size) | {med(recover) * 1000:.0f} ms "
        f"| {med(cont) * 1000:.0f} ms | {med(cont) / med(recover):.2f}x |"
    )
    print(
        f"| resident memory of the process | {med(rss_before):.1f} MiB running "
        f"| {med(rss_frozen):.2f} MiB frozen | |"
    )


if __name__ == "__main__":
    main()
