"""Checkpoint and restore of a multi-threaded process, against one thread, in the same run.

    python3 benchmarks/bench_thread_ckpt.py [--threads 8] [--mib 1024] [--rounds 3] [--dir /var/tmp]

The program (benchmarks/cprogs/threadmem.c) touches ``--mib`` MiB of memory
shared out among its threads, which then wait on a condition variable; the
baseline is the same program with one thread and the same memory, measured
alternately with it in each round.

* freeze: how long the program is stopped (mosix-ckpt's ``-T`` pause: every
  thread seized and interrupted, each other thread's registers, XSAVE area,
  mask, altstack, robust list, rseq and pending signals read, the injected
  copy-on-write fork, every thread released); target <= 30 ms for 8 threads
  and 1 GiB;
* checkpoint: from the start of mosix-ckpt until the image is on disk (``-T``
  total);
* restore: from exec of the restorer until the program's answer (every
  thread recreated; the answer is a checksum of a word of each page, summed by
  the thread that touched it);
* the part of the freeze spent stopping the other threads and reading their
  state (``-T`` threads_us; 0 for one thread).

Each number is the median of ``--rounds`` runs, page cache warm (the image
read once just before each restore).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_ckpt import answer, capture, restore, start  # the same process handling

HERE = Path(__file__).resolve().parent


def build(directory: Path) -> str:
    out = directory / "threadmem"
    source = HERE / "cprogs" / "threadmem.c"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", out, source], check=True)
    return str(out)


def warm_up(image: Path) -> None:
    subprocess.run(["dd", f"if={image}", "of=/dev/null", "bs=4M"], check=True, capture_output=True)


def one_round(prog: str, threads: int, mib: int, work: Path) -> tuple[float, ...]:
    """(freeze, checkpoint, restore, the threads' part of the freeze) in ms, ``threads`` threads."""
    p = start([prog, str(threads), str(mib)])
    image = work / f"t{threads}.img"
    t = capture(p.pid, image)
    assert t["threads"] == threads, t
    expected = answer(p)
    warm_up(image)
    seconds, got = restore(image)
    assert got == expected, (got, expected)
    image.unlink()
    return t["pause_us"] / 1000, t["total_us"] / 1000, seconds * 1000, t["threads_us"] / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-thread-ckpt-", dir=a.dir))
    prog = build(work)
    runs: dict[int, list[tuple[float, ...]]] = {1: [], a.threads: []}
    for _ in range(a.rounds):
        for threads in runs:  # alternately: both see the same machine
            runs[threads].append(one_round(prog, threads, a.mib, work))
    labels = (
        "freeze",
        "checkpoint (on disk)",
        "restore (to the answer)",
        "of the freeze: stopping and reading the other threads",
    )
    print(f"| {a.mib} MiB touched | 1 thread | {a.threads} threads | ratio |")
    print("|---|---:|---:|---:|")
    for i, label in enumerate(labels):
        base = statistics.median(r[i] for r in runs[1])
        many = statistics.median(r[i] for r in runs[a.threads])
        ratio = f"{many / base:.2f}x" if i < 3 else ""  # one thread has no other threads
        print(f"| {label} | {base:.1f} ms | {many:.1f} ms | {ratio} |")
    for f in work.iterdir():
        f.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
