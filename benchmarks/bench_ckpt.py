"""Checkpoint and restore speed, with baselines measured in the same run.

    python3 benchmarks/bench_ckpt.py [--mib 1024] [--rounds 3] [--dir /tmp]

* freeze: how long the program is stopped while a checkpoint of a process with
  ``--mib`` MiB of touched memory is taken (the capturer's ``-T`` pause: seize,
  injected copy-on-write fork, detach); target <= 20 ms for 1 GiB;
* write: the capturer's throughput (image bytes / time until the file is on disk,
  fsync included) against ``dd bs=4M conv=fsync`` of the same size into the same
  directory; target >= 0.9x;
* restore: a small C program (target <= 20 ms) and the ``--mib`` image (target
  <= 1.2x the time ``dd`` takes to read the file), from exec of the restorer to
  the program's answer; and the whole ``mosrun -R`` for the small one;
* image size of a 1 MiB program (``bigmem 1``): a checkpoint file (unchanged pages
  of libraries and the executable referenced, format 3) against the previous
  format's image of the same process in the same run (every page stored:
  ``MOSIX_CKPT_STORE_FILE_PAGES=1``); CRIU 4.2's 1.2 MB on the same program is the
  number recorded in issue 22 (CRIU is not built here), not measured by this run.
  ``--sizes`` measures only this.

Each number is the median of ``--rounds`` runs.  Restores are compared with reads
in the same page-cache state: cold (caches dropped before each, needs root) and warm
(the file read once just before).  The capturer writes with O_DIRECT, so a fresh
image is not in the cache.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from mosix.native_names import STORE_FILE_PAGES_ENV

HERE = Path(__file__).resolve().parent


def native(name: str) -> str:
    import mosix.native

    return mosix.native.native_path(name)


def build(directory: Path) -> str:
    out = directory / "bigmem"
    subprocess.run(["gcc", "-O2", "-o", out, HERE / "cprogs" / "bigmem.c"], check=True)
    return str(out)


def start(argv: list[str]) -> subprocess.Popen[str]:
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    return p


def answer(p: subprocess.Popen[str]) -> str:
    out, _ = p.communicate("x", timeout=300)
    return out


def capture(pid: int, image: Path, store_file_pages: bool = False) -> dict[str, int]:
    image.unlink(missing_ok=True)
    env = dict(os.environ)
    if store_file_pages:
        env[STORE_FILE_PAGES_ENV] = "1"
    r = subprocess.run(
        [native("mosix-ckpt"), "-T", "-o", str(image), str(pid)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", r.stderr)}


def dd_write(path: Path, mib: int, direct: bool = False) -> float:
    path.unlink(missing_ok=True)
    how = "oflag=direct" if direct else "conv=fsync"
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=4M", f"count={max(1, mib // 4)}", how],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    path.unlink()
    return max(1, mib // 4) * 4 * (1 << 20) / seconds


def dd_read(path: Path, block: str = "4M") -> float:
    """Seconds to read the file: ``4M`` streams it through one small buffer, ``1G``
    reads it into a fresh 1 GiB buffer (memory to fault in, as a restore does)."""
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", f"if={path}", "of=/dev/null", f"bs={block}"], check=True, capture_output=True
    )
    return time.perf_counter() - t0


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def restore(image: Path) -> tuple[float, str]:
    """Seconds from exec of the restorer to the restored program's answer."""
    fd = os.open(image, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [native("mosix-restore"), str(fd)],
            pass_fds=[fd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        out = answer(p)
        return time.perf_counter() - t0, out
    finally:
        os.close(fd)


def mosrun_restore(image: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["mosrun", f"-R{image}"], input="x", capture_output=True, text=True, check=True)
    return time.perf_counter() - t0


CRIU_1MIB_IMAGE = 1.2e6  # bytes: CRIU 4.2 on bigmem 1, as recorded in issue 22 (not measured here)


def image_sizes(prog: str, work: Path, rounds: int) -> list[tuple[str, str, str, str]]:
    """A 1 MiB program's checkpoint file, with file pages referenced and all stored."""
    refs, full, restores, full_restores = [], [], [], []
    takes, full_takes = [], []
    for _ in range(rounds):
        p = start([prog, "1"])
        small, old = work / "small.img", work / "small-v2.img"
        full_takes.append(capture(p.pid, old, store_file_pages=True)["total_us"] / 1000)
        takes.append(capture(p.pid, small)["total_us"] / 1000)
        expected = answer(p)
        refs.append(small.stat().st_size)
        full.append(old.stat().st_size)
        seconds, got = restore(small)
        assert got == expected, (got, expected)
        restores.append(seconds)
        seconds, got = restore(old)
        assert got == expected, (got, expected)
        full_restores.append(seconds)
        small.unlink()
        old.unlink()
    ref, old_size = statistics.median(refs), statistics.median(full)
    take, full_take = statistics.median(takes), statistics.median(full_takes)
    return [
        (
            "checkpoint of that program (the capturer's run, on disk)",
            f"every page stored {full_take:.1f} ms",
            f"{take:.1f} ms",
            f"{take / full_take:.2f}x",
        ),
        (
            "image of a 1 MiB program (bigmem 1)",
            f"every page stored {old_size / 1e6:.2f} MB",
            f"{ref / 1e6:.2f} MB",
            f"{ref / old_size:.2f}x",
        ),
        (
            "image of a 1 MiB program, vs CRIU 4.2",
            f"CRIU {CRIU_1MIB_IMAGE / 1e6:.1f} MB (issue 22, not this run)",
            f"{ref / 1e6:.2f} MB",
            f"{ref / CRIU_1MIB_IMAGE:.2f}x",
        ),
        (
            "restore of that image (file pages mapped and hashed)",
            f"every page stored {statistics.median(full_restores) * 1000:.1f} ms",
            f"{statistics.median(restores) * 1000:.1f} ms",
            f"{statistics.median(restores) / statistics.median(full_restores):.2f}x",
        ),
    ]


def print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    print("| measurement | baseline | checkpoint engine | ratio |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--sizes", action="store_true", help="only the image sizes")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ckpt-", dir=a.dir))
    prog = build(work)
    rows: list[tuple[str, str, str, str]] = []
    if a.sizes:
        print_rows(image_sizes(prog, work, a.rounds))
        for f in work.iterdir():
            f.unlink()
        work.rmdir()
        return

    pauses, rates, dd_rates, direct_rates = [], [], [], []
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    warm_1g: list[float] = []
    for _ in range(a.rounds):
        p = start([prog, str(a.mib)])
        image = work / "big.img"
        t = capture(p.pid, image)
        expected = answer(p)
        pauses.append(t["pause_us"] / 1000)
        rates.append(t["bytes"] / (t["total_us"] / 1e6))
        dd_rates.append(dd_write(work / "dd.img", a.mib))
        direct_rates.append(dd_write(work / "dd.img", a.mib, direct=True))
        if drop_caches():
            read = dd_read(image)
            drop_caches()
            seconds, got = restore(image)
            assert got == expected, (got, expected)
            cold.append((seconds, read))
        read = dd_read(image)
        warm_1g.append(dd_read(image, "1G"))
        seconds, got = restore(image)
        assert got == expected, (got, expected)
        warm.append((seconds, read))
        image.unlink()
    pause, rate, dd_rate, direct_rate = (
        statistics.median(x) for x in (pauses, rates, dd_rates, direct_rates)
    )
    rows.append((f"freeze, {a.mib} MiB touched", "target 20 ms", f"{pause:.1f} ms", ""))
    rows.append(
        (
            f"checkpoint write, {a.mib} MiB (fsync)",
            f"dd {dd_rate / 1e6:.0f} MB/s",
            f"{rate / 1e6:.0f} MB/s",
            f"{rate / dd_rate:.2f}x",
        )
    )
    rows.append(
        (
            f"checkpoint write, {a.mib} MiB (O_DIRECT)",
            f"dd oflag=direct {direct_rate / 1e6:.0f} MB/s",
            f"{rate / 1e6:.0f} MB/s",
            f"{rate / direct_rate:.2f}x",
        )
    )
    if warm:
        rest = statistics.median(r for r, _ in warm)
        read = statistics.median(warm_1g)
        rows.append(
            (
                f"restore, {a.mib} MiB image, page cache warm, into fresh memory",
                f"dd bs=1G read {read * 1000:.0f} ms",
                f"{rest * 1000:.0f} ms",
                f"{rest / read:.2f}x",
            )
        )
    for label, pairs in (("page cache cold", cold), ("page cache warm", warm)):
        if not pairs:
            continue
        rest = statistics.median(r for r, _ in pairs)
        read = statistics.median(d for _, d in pairs)
        rows.append(
            (
                f"restore, {a.mib} MiB image, {label}",
                f"dd read {read * 1000:.0f} ms",
                f"{rest * 1000:.0f} ms",
                f"{rest / read:.2f}x",
            )
        )

    small_restores, small_mosrun = [], []
    for _ in range(a.rounds):
        p = start([prog, "1"])
        image = work / "small.img"
        capture(p.pid, image)
        expected = answer(p)
        seconds, got = restore(image)
        assert got == expected
        small_restores.append(seconds)
        small_mosrun.append(mosrun_restore(image))
    rows.append(
        (
            "restore, small C program",
            "target 20 ms",
            f"{statistics.median(small_restores) * 1000:.1f} ms",
            "",
        )
    )
    rows.append(
        ("`mosrun -R`, small C program", "", f"{statistics.median(small_mosrun) * 1000:.0f} ms", "")
    )

    rows += image_sizes(prog, work, a.rounds)
    print_rows(rows)
    for f in work.iterdir():
        f.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
