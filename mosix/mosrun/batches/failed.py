"""The failed-commands file of -S: failed lines in file order, written as they become known.

Lines end out of order, but the file lists failed lines in the order of the
commands-file, so that it can be fed back as a commands-file.  A failed line
is written as soon as every line started before it has ended; until then it
waits in a buffer.  The buffer is bounded: when the lines between the oldest
still running line and the newest started one reach :data:`WINDOW_LINES`, or
the failed lines waiting reach :data:`WINDOW_BYTES`, :meth:`FailedLog.full`
asks the scheduler to start no new line until the oldest one ends.

Each batch of known lines goes to the kernel in one write(2) at once (no
buffering in the process), so a crash of mosrun loses nothing already known.
A write error (a full disk: ENOSPC) is reported once; the lines go on
running, the file stays incomplete, and the exit status (the number of failed
lines, at least 1 then) says that something failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable

WINDOW_LINES = 65536
WINDOW_BYTES = 16 * 1024 * 1024

_RUNNING = object()  # marker of a line that has not ended yet


class FailedLog:
    """Orders the ends of lines by their start sequence; writes the failed ones to ``fd``."""

    def __init__(self, fd: int | None, name: str, report: Callable[[str], None]) -> None:
        self.fd = fd
        self.name = name
        self.report = report
        self.head = 0  # sequence number of the oldest line not yet settled
        self.next = 0  # sequence number the next started line gets
        self.ends: dict[int, object] = {}  # sequence -> _RUNNING, None (success) or the line
        self.waiting_bytes = 0
        self.incomplete = False  # a write failed: the file misses failed lines

    def started(self) -> int:
        """Record a line as started; returns its sequence number."""
        seq = self.next
        self.next += 1
        if self.fd is not None:
            self.ends[seq] = _RUNNING
        return seq

    def ended(self, seq: int, failed_line: bytes | None) -> None:
        """Line ``seq`` ended; ``failed_line`` is its text if it failed, else None."""
        if self.fd is None:
            return
        self.ends[seq] = failed_line
        if failed_line is not None:
            self.waiting_bytes += len(failed_line) + 1
        if seq == self.head:
            self.settle()

    def withdrawn(self, seq: int) -> None:
        """Line ``seq`` will never run (it was queued when mosrun stopped)."""
        self.ended(seq, None)

    def full(self) -> bool:
        """True when no line should start until the oldest running one ends."""
        if self.fd is None:
            return False
        return (self.next - self.head) >= WINDOW_LINES or self.waiting_bytes >= WINDOW_BYTES

    def settle(self) -> None:
        out: list[bytes] = []
        ends = self.ends
        while self.head < self.next and ends[self.head] is not _RUNNING:
            line = ends.pop(self.head)
            if isinstance(line, bytes):
                out.append(line)
                out.append(b"\n")
                self.waiting_bytes -= len(line) + 1
            self.head += 1
        if out:
            self.write(b"".join(out))

    def write(self, data: bytes) -> None:
        if self.incomplete or self.fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as e:
            self.incomplete = True
            self.report(
                f"-S: {self.name}: cannot write: {e.strerror}; it misses failed lines "
                "from here on (the lines go on running)"
            )
