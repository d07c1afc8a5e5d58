"""mosix-zpipe (csrc/zpipe/mosix_zpipe.c): a migration image compressed over a slow link.

The image format does not change: on the sending node the capturer writes into
a pipe and mosix-zpipe -c compresses it onto the connection; on the receiving
node mosix-zpipe -d decompresses the connection into a pipe that the image's
reader (mosix-remote's restorer, or the deputy coming home) reads as before.
zstd at level 1: on this VM it compresses ~450 MB/s of a half text, half random
image on one core (the random half stored as it is), far above a slow link.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import os
import subprocess
from dataclasses import dataclass

import trio

from mosix.native import NATIVE_DIR, native_path
from mosix.native.helper_process import close_process
from mosix.native_names import Program

PROGRAM = Program.ZPIPE
LEVEL = 1  # zstd's level (benchmarks/bench_compression.py)
LIBRARY = "libzstd.so.1"  # what the helper loads with dlopen
PIPE_BYTES = 1 << 20  # the pipes between the pump and the image's writer or reader


@functools.cache
def available() -> bool:
    """Whether this node can compress and decompress images: the helper is built and
    zstd's runtime library loads (the helper loads the same library)."""
    if not (NATIVE_DIR / PROGRAM).exists():
        return False
    try:
        ctypes.CDLL(LIBRARY)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Pumped:
    """What a finished pump did: bytes read and written, or why it failed."""

    bytes_in: int = 0
    bytes_out: int = 0
    error: str = ""


async def _start(compress: bool, in_fd: int, out_fd: int) -> trio.Process:
    argv = [native_path(PROGRAM), *(["-c", str(LEVEL)] if compress else ["-d"]), "-s"]
    return await trio.lowlevel.open_process(
        argv, stdin=in_fd, stdout=out_fd, stderr=subprocess.PIPE
    )


def _pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups (root's limit is higher)
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return read_end, write_end


async def compressing(sink: int) -> tuple[int, trio.Process]:
    """A pipe whose bytes go compressed to ``sink``: its write end (ours to close)
    and the pump (end it with :func:`finished`).  ``sink`` stays open here."""
    read_end, write_end = _pipe()
    try:
        proc = await _start(True, read_end, sink)
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return write_end, proc


async def decompressing(source: int) -> tuple[int, trio.Process]:
    """A pipe that gives ``source``'s compressed bytes decompressed: its read end
    (ours to close) and the pump (end it with :func:`finished`)."""
    read_end, write_end = _pipe()
    try:
        proc = await _start(False, source, write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end, proc


async def finished(proc: trio.Process) -> Pumped:
    """Wait for a pump's end; what it did (its "in=N out=M" line) or its one-line error."""
    assert proc.stderr is not None
    try:
        said = bytearray()
        while chunk := await proc.stderr.receive_some(4096):
            said += chunk
        status = await proc.wait()
    finally:
        if proc.returncode is None:
            stop(proc)
        await close_process(proc)
    text = said.decode(errors="replace").strip()
    if status != 0:
        return Pumped(error=text.splitlines()[0] if text else f"{PROGRAM} ended with {status}")
    fields = dict(w.split("=", 1) for w in text.split() if "=" in w)
    try:
        return Pumped(int(fields["in"]), int(fields["out"]))
    except (KeyError, ValueError):
        return Pumped(error=f"{PROGRAM}: no byte counts")


def stop(proc: trio.Process) -> None:
    """Kill a pump whose transfer is abandoned (reap it with :func:`finished`)."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
