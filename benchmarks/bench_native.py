"""Where a compiled Python hot spot would pay: the numbers behind mosix/native/.

    python3 benchmarks/bench_native.py [--rounds 7]

* checksum: mxh64 in Python (the twin mosix/ckpt/mxhash.py was, read from git
  history: ``--twin-rev``) against the C function through the cffi binding;
* listing: ``mosrun -I``'s read of an image head with 1000 open files
  (mosix.ckpt.image.read_head), the checks in C, against the same with the
  Python twin put back in its place.

Each number is the median of ``--rounds`` runs.  The /proc scans, where a compiled
reader was the other candidate: benchmarks/bench_proc_scans.py.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from mosix.ckpt import format as fmt  # noqa: E402
from mosix.ckpt import image  # noqa: E402
from mosix.native.checksum import mxh64  # noqa: E402


def median_ms(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def twin(rev: str) -> Callable[[bytes], int]:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:mosix/ckpt/mxhash.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("mxhash_twin")
    exec(compile(source, "mxhash.py", "exec"), module.__dict__)
    return module.mxh64


def listing_image(files: int) -> bytes:
    import ckpt_images as ci

    records: list[tuple[int, bytes]] = [
        (fmt.Kind.PROCESS, bytes(fmt.PROCESS.size)),
        (fmt.Kind.OPTIONS, b"argv0=x\n"),
        (fmt.Kind.CWD, b"/"),
    ]
    for fd in range(files):
        path = f"/var/tmp/some/rather/long/path/to/file-{fd}".encode()
        records.append((fmt.Kind.FILE, fmt.FILE.pack(fd=fd, kind=1, path_len=len(path)) + path))
    records.append((fmt.Kind.REGS, bytes(fmt.REGS.size)))
    return ci.encode_records(records)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--twin-rev", default="46d64d3")  # the last with the twin
    args = parser.parse_args()
    r = args.rounds

    py_mxh64 = twin(args.twin_rev)
    for size in (4096, 1 << 20):
        data = os.urandom(size)
        p = median_ms(lambda d=data: py_mxh64(d), r)
        c = median_ms(lambda d=data: mxh64(d), r)
        print(f"checksum {size >> 10} KiB: Python {p:.3f} ms, C (cffi) {c:.4f} ms, x{p / c:.0f}")

    raw = listing_image(1000)
    c = median_ms(lambda: image.read_head(io.BytesIO(raw)), r)
    saved = image.mxh64
    image.mxh64 = py_mxh64  # the payloads with the twin; headers stay in C
    p = median_ms(lambda: image.read_head(io.BytesIO(raw)), r)
    image.mxh64 = saved
    print(
        f"listing of 1000 files ({len(raw) >> 10} KiB): checks in C {c:.2f} ms, "
        f"payload checksums in Python {p:.2f} ms"
    )


if __name__ == "__main__":
    main()
