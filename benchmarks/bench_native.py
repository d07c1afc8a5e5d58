"""Where a compiled Python hot spot would pay: the numbers behind mosix/native/.

    python3 benchmarks/bench_native.py [--rounds 7] [--processes 300]

* checksum: mxh64 in Python (the twin mosix/ckpt/mxhash.py was, read from git
  history: ``--twin-rev``) against the C function through the cffi binding;
* listing: ``mosrun -I``'s read of an image head with 1000 open files
  (mosix.ckpt.image.read_head), the checks in C, against the same with the
  Python twin put back in its place;
* /proc scans: the registry's discovery loop (every pid: MOSIX_INHERIT, real uid)
  and the load vector's namespace scan (every pid: its namespace, comm, stat),
  each against the floor a compiled version still pays: opening, reading and
  closing the same files from Python (``os.open``/``os.read``/``os.close``).

``--processes`` extra sleeping processes are started first so the scans have
something to scan.  Each number is the median of ``--rounds`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
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
from mosix.remote_agent import load_vectors  # noqa: E402
from mosix.sysinfo import proc_info  # noqa: E402


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


def registry_scan() -> int:
    n = 0
    for pid in proc_info.pids():
        if proc_info.inherited_words(pid) is not None or proc_info.real_uid(pid) is not None:
            n += 1
    return n


def read_floor(names: list[str]) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for name in names:
            try:
                fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY)
            except OSError:
                continue
            with contextlib.suppress(OSError):
                n += len(os.read(fd, 65536))
            os.close(fd)
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--processes", type=int, default=300)
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

    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(args.processes)]
    try:
        count = len(proc_info.pids())
        scan = median_ms(registry_scan, r)
        floor = median_ms(lambda: read_floor(["environ", "status"]), r)
        print(
            f"registry scan of {count} processes: {scan:.1f} ms; reading the same files "
            f"alone: {floor:.1f} ms (Python's share {scan - floor:.1f} ms)"
        )
        own = os.readlink("/proc/self/ns/net")
        scan = median_ms(lambda: load_vectors.namespace_runnable(own), r)
        floor = median_ms(lambda: read_floor(["ns/net", "comm", "stat"]), r)
        print(
            f"load vector scan of {count} processes: {scan:.1f} ms; reading the same files "
            f"alone: {floor:.1f} ms (Python's share {scan - floor:.1f} ms)"
        )
    finally:
        for s in sleepers:
            s.kill()
            s.wait()


if __name__ == "__main__":
    main()
