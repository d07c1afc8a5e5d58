"""mosix-zpipe, the compressor of migration images on slow links: what goes in comes
out, and a damaged or cut stream is refused in one line (exit status 1)."""

from __future__ import annotations

import os
import subprocess

import pytest

from mosix.native import native_path, zpipe

pytestmark = pytest.mark.skipif(not zpipe.available(), reason="no libzstd.so.1 on this machine")


def run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [native_path(zpipe.PROGRAM), *args], input=data, capture_output=True, timeout=60
    )


def sample() -> bytes:
    text = b"".join(b"%08d image page node\n" % i for i in range(200_000))
    return text + os.urandom(2 << 20)


def test_round_trip_is_exact_and_counts_bytes() -> None:
    data = sample()
    packed = run(["-c", str(zpipe.LEVEL), "-s"], data)
    assert packed.returncode == 0, packed.stderr
    assert len(packed.stdout) < len(data) // 2  # the text shrinks, the random part does not grow
    assert packed.stderr == b"in=%d out=%d\n" % (len(data), len(packed.stdout))
    unpacked = run(["-d"], packed.stdout)
    assert unpacked.returncode == 0 and unpacked.stdout == data, unpacked.stderr


@pytest.mark.parametrize(
    ("cut", "said"),
    [
        (lambda z: z[: len(z) // 2], b"mosix-zpipe: the compressed image ends short"),
        (lambda z: b"", b"mosix-zpipe: the compressed image ends short"),
        (lambda z: b"mosrun: not zstd at all\n" + z, b"mosix-zpipe: a damaged compressed image"),
    ],
)
def test_a_damaged_stream_is_refused_in_one_line(cut, said: bytes) -> None:
    packed = run(["-c", "1"], sample()).stdout
    done = run(["-d"], cut(packed))
    assert done.returncode == 1
    assert done.stderr.startswith(said) and done.stderr.count(b"\n") == 1, done.stderr


@pytest.mark.parametrize("args", [[], ["-c"], ["-c", "x"], ["-c", "1", "-d"], ["-d", "extra"]])
def test_bad_usage_is_refused_in_one_line(args: list[str]) -> None:
    done = run(args, b"")
    assert done.returncode == 2
    assert done.stderr.startswith(b"mosix-zpipe: ") and done.stderr.count(b"\n") == 1


def test_it_says_whether_zstd_is_here() -> None:
    assert run(["-a"], b"").returncode == 0
