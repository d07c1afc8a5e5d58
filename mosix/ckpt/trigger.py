"""A program under mosrun asks for its own checkpoint (Python's mosix_checkpoint.h).

MOSIX's checkpoint call is a system call number Linux does not have
(:data:`mosix.native_names.CHECKPOINT_NR`): under mosrun the discipline's
filter hands it to the process tree's guard, which asks the node agent and
answers once the checkpoint file is complete.  Outside mosrun the kernel fails
it with ENOSYS.

    from mosix.ckpt import trigger
    if trigger.checkpoint() == trigger.RESUMED:
        ...  # recovered from that checkpoint (mosrun -R): reopen what could not be

Every function raises :class:`OSError` with the call's errno on failure:
ECANCELED (not taken: refused or failed, or no agent), EINVAL (a bad value),
ENAMETOOLONG, ENOSYS (not under mosrun).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

from mosix.native_names import CHECKPOINT_NR

OP_CHECKPOINT = 1
OP_SET_FILE = 2
OP_SET_LIMIT = 3
OP_SET_INTERVAL = 4

DONE = 0  # the checkpoint was written; the process goes on
RESUMED = 1  # the process was recovered from that checkpoint and goes on from there


@cache
def _syscall() -> Callable[[int, int, ctypes.c_void_p], int]:
    """libc's syscall(2), from the process's own libc (the shim lets the number through)."""
    call = ctypes.CDLL(None, use_errno=True).syscall
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
    return call


def _call(op: int, arg: int | bytes | None) -> int:
    buffer = None
    if isinstance(arg, bytes):
        buffer = ctypes.create_string_buffer(arg)  # kept alive until the call returns
        value = ctypes.cast(buffer, ctypes.c_void_p)
    else:
        value = ctypes.c_void_p(arg)
    ctypes.set_errno(0)
    result = int(_syscall()(CHECKPOINT_NR, op, value))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _count(what: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= 0x7FFFFFFF:
        raise OSError(errno.EINVAL, f"{what} must be between 0 and 2147483647: {value}")
    return value


def checkpoint() -> int:
    """Take a checkpoint now: :data:`DONE` (0) once written, :data:`RESUMED` (1) when
    this process was later recovered from it."""
    return _call(OP_CHECKPOINT, None)


def set_file(path: str | os.PathLike[str] | bytes) -> None:
    """Future checkpoints go to PATH.1, PATH.2 ... (mosrun -C); relative to the cwd."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ValueError("embedded null byte in the checkpoint file name")
    _call(OP_SET_FILE, raw)


def set_limit(n: int) -> None:
    """Recycle the checkpoint numbers after ``n`` files (mosrun -N; 0: unlimited)."""
    _call(OP_SET_LIMIT, _count("the limit", n))


def set_interval(minutes: int) -> None:
    """Take a checkpoint every ``minutes`` minutes (mosrun -A; 0: never)."""
    _call(OP_SET_INTERVAL, _count("the interval", minutes))


def include_dir() -> Path:
    """The directory holding ``mosix_checkpoint.h`` (for ``cc -I``)."""
    return Path(__file__).resolve().parent.parent / "include"
