"""A capture that stops a process between a seccomp trap and its SIGSYS.

A call a seccomp filter traps (SECCOMP_RET_TRAP: the preload shim's fix-ups at
home, every forwarded call of the fast path away from home) is skipped by the
kernel, which queues a SIGSYS for the shim's handler to do the call's work.
PTRACE_INTERRUPT can stop the process between the two.  The capturer must then
leave the call to be issued again (csrc/ckpt/ckpt_capture_trace.c): resumed after
it, the call returned its own number (here mmap's 9), and the SIGSYS, held
back during the capture and sent again by kill(), reached the handler as a
stranger's and killed the process.  That was the fast path's come-home race.

``cprogs/trapped_calls.c`` does nothing but such calls (mmap MAP_SHARED of a
file without PROT_WRITE, which the shim issues again as MAP_PRIVATE), so one
capture in a few lands in the window; the tests take many.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cbuild import build_c
from support.waiting import wait_until

from mosix.native import NATIVE_DIR

CKPT = NATIVE_DIR / "mosix-ckpt"
SOURCE = Path(__file__).parent / "cprogs" / "trapped_calls.c"
TIMEOUT = 60
LIVE_CAPTURES = 150
RECOVERIES = 12


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("mosrun") is None or not CKPT.exists():
        pytest.fail("mosrun and mosix-ckpt are not installed (pip install .)")
    return build_c(SOURCE, tmp_path_factory.mktemp("trapped") / "trapped_calls", "-O2")


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(4096))
    yield data, tmp_path / "progress"


def mosrun(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mosrun", *args],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def calls_done(progress: Path) -> int:
    data = progress.read_bytes() if progress.exists() else b""
    return struct.unpack("<q", data[:8])[0] if len(data) >= 8 else 0


def goes_on(proc: subprocess.Popen[str], progress: Path) -> None:
    """The program makes more calls than it had (or its end fails the test)."""
    before = calls_done(progress)

    def more() -> bool:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the program ended ({proc.returncode}): {out} {err.strip()}")
        return calls_done(progress) > before

    wait_until(more, TIMEOUT, what="the program to make more calls", period=0.01)


def capture(pid: int, image: Path, *args: str) -> None:
    done = subprocess.run(
        [str(CKPT), "-o", str(image), *args, str(pid)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr


def finish(proc: subprocess.Popen[str]) -> int:
    """Its stdin ends: it stops and says how many calls it made."""
    out, err = proc.communicate("end", timeout=TIMEOUT)
    assert proc.returncode == 0, (out, err)
    words = out.split()
    assert words[:1] == ["mapped"], out
    return int(words[1])


def test_captures_in_the_middle_of_trapped_calls_leave_the_process_unharmed(
    prog: Path, files: tuple[Path, Path], tmp_path: Path
) -> None:
    data, progress = files
    proc = mosrun(str(prog), str(data), str(progress), cwd=tmp_path)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[:1] == ["ready"]
        goes_on(proc, progress)
        for i in range(LIVE_CAPTURES):
            image = tmp_path / f"image{i % 2}"
            image.unlink(missing_ok=True)
            capture(proc.pid, image)
            assert proc.poll() is None, f"capture {i}: the process ended ({proc.returncode})"
        goes_on(proc, progress)
        assert finish(proc) >= calls_done(progress)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_process_recovered_from_such_a_capture_issues_the_call_again(
    prog: Path, files: tuple[Path, Path], tmp_path: Path
) -> None:
    """Captured (-a exit) in the middle of its calls and recovered (mosrun -R),
    round after round: every recovered process goes on with correct mappings."""
    data, progress = files
    image = tmp_path / "image"
    for i in range(RECOVERIES):
        proc = mosrun(str(prog), str(data), str(progress), cwd=tmp_path)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().split()[:1] == ["ready"]
            goes_on(proc, progress)
            image.unlink(missing_ok=True)
            capture(proc.pid, image, "-a", "exit")
            assert proc.wait(timeout=TIMEOUT) == -9, f"round {i}"
            proc = mosrun(f"-R{image}", cwd=tmp_path)
            goes_on(proc, progress)
            assert finish(proc) >= calls_done(progress)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
