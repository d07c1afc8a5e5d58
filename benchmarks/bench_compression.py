"""Compressed migration images (``[cluster] compress``) against uncompressed, in the same run.

    python3 benchmarks/bench_compression.py [--mib 64] [--rate 100] [--runs 3]
                                            [--name benchz]

Brings up two 2-node test clusters (root): ``--name`` with ``compress = "on"`` and
``--name``off with ``compress = "off"`` (the baseline: the image as it is).  In each,
``tests/cprogs/zmem.c`` holding ``--mib`` MiB of (a) text-like lines (compressible)
or (b) pseudo-random words (incompressible) is started under mosrun on node 1, moved
to node 2 and back home; each move is timed from the request to the agent's answer
(in node 1's namespace, the agent client called directly), and the program checks at
the end that its memory is what it was.  Once over the unshaped veth link, once with
node 2's link limited to ``--rate`` Mbit/s both ways (``LocalCluster.shape``, tbf).
Medians of ``--runs`` (min-max); the ratio is compressed over uncompressed, same
link, same data.  The home agent's "image compressed" lines give the bytes on the wire.
First, the codecs alone, one-shot in memory on ``--mib`` MiB of each kind of data
(zstd levels 1 and -1, lz4's frame format; through ctypes, skipped for a library that
is not installed): why zstd level 1.  Then the compressor (``mosix-zpipe -c``, one
core) on the same data from a file, against ``cat`` of the same file (the baseline: a
copy through a pipe).
"""

from __future__ import annotations

import argparse
import ctypes
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_cluster import AWAY, CFLAGS, HOME, MOVE, checked, node_name

from mosix.native import native_path, zpipe
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

HERE = Path(__file__).resolve().parent
ZMEM = HERE.parent / "tests" / "cprogs" / "zmem.c"
TIMEOUT = 600


@dataclass(frozen=True)
class Moves:
    away: float  # seconds, node 1 -> node 2
    home: float  # seconds, node 2 -> node 1


def timed_move(cluster: LocalCluster, pid: int, target: str) -> float:
    done = cluster.run(
        HOME,
        [sys.executable, "-c", MOVE, str(pid), target],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    words = checked(done, f"migrate {pid} {target}").split()
    if len(words) != 3 or words[2] != "1":
        sys.exit(f"bench_compression: migrate {pid} {target}: {done.stderr.strip()}")
    return float(words[1]) - float(words[0])


def moves_once(cluster: LocalCluster, prog: str, text_mib: int, random_mib: int) -> Moves:
    proc = cluster.popen(
        HOME,
        ["mosrun", prog, str(text_mib), str(random_mib)],
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "ready":
            sys.exit(f"bench_compression: zmem did not start: {proc.communicate()[1]}")
        away = timed_move(cluster, proc.pid, node_name(AWAY))
        home = timed_move(cluster, proc.pid, "home")
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or out.split() != ["done", ready[1]]:
        sys.exit(f"bench_compression: zmem ended with {proc.returncode}: {out!r} {err.strip()}")
    return Moves(away, home)


def span(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1000:.0f} ms "
        f"({min(values) * 1000:.0f}-{max(values) * 1000:.0f})"
    )


def wire_ratio(cluster: LocalCluster, start: int) -> str:
    """Bytes on the wire over image bytes of the compressed moves out since ``start``."""
    found = re.findall(
        r"image compressed to node 2: (\d+) -> (\d+) bytes",
        cluster.agent_log(HOME).read_text()[start:],
    )
    if not found:
        return "?"
    raw = sum(int(a) for a, _ in found)
    wire = sum(int(b) for _, b in found)
    return f"{wire / raw:.2f}"


def codec_speed(compress: Callable[[bytes], int], data: bytes) -> tuple[float, float]:
    """MB/s (best of 3) and output/input of one-shot compression of ``data``."""
    best, out = float("inf"), 0
    for _ in range(3):
        t0 = time.monotonic()
        out = compress(data)
        best = min(best, time.monotonic() - t0)
    return len(data) / best / 1e6, out / len(data)


def codecs() -> dict[str, Callable[[bytes], int]]:
    """One-shot compressors by name (output bytes), of the libraries installed here."""
    found: dict[str, Callable[[bytes], int]] = {}
    size_t, void_p = ctypes.c_size_t, ctypes.c_void_p
    try:
        z = ctypes.CDLL("libzstd.so.1")
        z.ZSTD_compressBound.restype, z.ZSTD_compressBound.argtypes = size_t, [size_t]
        z.ZSTD_compress.restype = size_t
        z.ZSTD_compress.argtypes = [void_p, size_t, void_p, size_t, ctypes.c_int]

        def zstd(level: int) -> Callable[[bytes], int]:
            def run(data: bytes) -> int:
                cap = z.ZSTD_compressBound(len(data))
                return int(
                    z.ZSTD_compress(ctypes.create_string_buffer(cap), cap, data, len(data), level)
                )

            return run

        found["zstd 1"], found["zstd -1"] = zstd(1), zstd(-1)
    except OSError:
        pass
    try:
        lz = ctypes.CDLL("liblz4.so.1")
        lz.LZ4F_compressFrameBound.restype = size_t
        lz.LZ4F_compressFrameBound.argtypes = [size_t, void_p]
        lz.LZ4F_compressFrame.restype = size_t
        lz.LZ4F_compressFrame.argtypes = [void_p, size_t, void_p, size_t, void_p]

        def lz4(data: bytes) -> int:
            cap = lz.LZ4F_compressFrameBound(len(data), None)
            return int(
                lz.LZ4F_compressFrame(ctypes.create_string_buffer(cap), cap, data, len(data), None)
            )

        found["lz4"] = lz4
    except OSError:
        pass
    return found


def codecs_alone(work: Path, mib: int) -> list[str]:
    lines = []
    for kind in ("text", "random"):
        path = work / kind
        sample_file(path, kind, mib)
        data = path.read_bytes()
        path.unlink()
        for name, compress in codecs().items():
            speed, ratio = codec_speed(compress, data)
            lines.append(f"| {kind} | {name} | {speed:.0f} MB/s | {ratio:.3f} |")
    return lines


def sample_file(path: Path, kind: str, mib: int) -> None:
    """``mib`` MiB of text-like lines or of random bytes (as zmem holds them)."""
    with path.open("wb") as f:
        if kind == "random":
            for _ in range(mib):
                f.write(random.randbytes(1 << 20))
            return
        words = [b"migrate", b"home", b"node", b"image", b"page", b"deputy"]
        line, size = 0, 0
        while size < mib << 20:
            chunk = b"".join(
                b"%08d %s %s\n" % (n, words[n % 6], words[(n // 6) % 6])
                for n in range(line, line + 10000)
            )
            f.write(chunk)
            line, size = line + 10000, size + len(chunk)


def throughput(argv: list[str], path: Path) -> tuple[float, str]:
    """MB/s of ``argv`` reading ``path`` into /dev/null (best of 3), and its stderr."""
    best, said = 0.0, ""
    for _ in range(3):
        with path.open("rb") as source:
            t0 = time.monotonic()
            done = subprocess.run(
                argv,
                stdin=source,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                check=True,
            )
            took = time.monotonic() - t0
        best, said = max(best, path.stat().st_size / took / 1e6), done.stderr
    return best, said


def compressor_alone(work: Path, mib: int) -> list[str]:
    lines = []
    for kind in ("text", "random"):
        path = work / kind
        sample_file(path, kind, mib)
        plain, _ = throughput(["cat"], path)
        argv = [native_path(zpipe.PROGRAM), "-c", str(zpipe.LEVEL), "-s"]
        packed, said = throughput(argv, path)
        counts = dict(w.split("=", 1) for w in said.split() if "=" in w)
        lines.append(
            f"| {kind} | {plain:.0f} MB/s | {packed:.0f} MB/s | {packed / plain:.2f}x "
            f"| {int(counts['out']) / int(counts['in']):.3f} |"
        )
        path.unlink()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rate", type=int, default=100, help="Mbit/s of the shaped link")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="benchz")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-z-", dir="/var/tmp"))
    work.chmod(0o755)
    rows = []
    try:
        each = codecs_alone(work, a.mib)
        alone = compressor_alone(work, a.mib)
        prog = str(work / "zmem")
        subprocess.run([*CFLAGS, "-o", prog, str(ZMEM)], check=True)
        with (
            LocalCluster(2, a.name, ClusterSettings(compress="on", balance_interval=0)).up() as on,
            LocalCluster(
                2, a.name + "off", ClusterSettings(compress="off", balance_interval=0)
            ).up() as off,
        ):
            for link in ("unshaped", f"{a.rate} Mbit/s"):
                if link != "unshaped":
                    on.shape(AWAY, rate_mbit=a.rate)
                    off.shape(AWAY, rate_mbit=a.rate)
                for data, sizes in (("text", (a.mib, 0)), ("random", (0, a.mib))):
                    start = len(on.agent_log(HOME).read_text())
                    plain = [moves_once(off, prog, *sizes) for _ in range(a.runs)]
                    packed = [moves_once(on, prog, *sizes) for _ in range(a.runs)]
                    ratio = wire_ratio(on, start)
                    for way in ("away", "home"):
                        p = [getattr(m, way) for m in plain]
                        z = [getattr(m, way) for m in packed]
                        factor = statistics.median(z) / statistics.median(p)
                        rows.append(
                            f"| {link} | {data} | {way} | {span(p)} | {span(z)} "
                            f"| {factor:.2f}x | {ratio if way == 'away' else ''} |"
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"the codecs alone, one-shot, {a.mib} MiB, best of 3")
    print("| data | codec | speed | out/in |")
    print("|---|---|---|---|")
    print("\n".join(each))
    print()
    print(f"the compressor alone (zstd level {zpipe.LEVEL}), {a.mib} MiB, best of 3")
    print("| data | cat | mosix-zpipe -c | ratio | out/in |")
    print("|---|---|---|---|---|")
    print("\n".join(alone))
    print()
    print(f"{a.mib} MiB of data in zmem; medians of {a.runs} (min-max)")
    print("| link | data | move | uncompressed | compressed | ratio | wire/image |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
