"""The -S scheduler: start lines in file order, at most maxjobs at a time.

The scheduler is single-threaded and knows nothing of processes: a
:class:`Backend` starts a line and blocks until one ends (the real one spawns
bash and waits with wait4(2); tests pass fakes).  It reads the commands-file
as a stream, so memory does not grow with the file: it holds the running
lines, at most :data:`~mosix.mosrun.batches.queue.QUEUED_MAX` queued ones, and the
bounded window of :class:`~mosix.mosrun.batches.failed.FailedLog`.

When the input turns out malformed, or the backend is asked to stop (a
signal), no further line starts; the lines already started are waited for and
counted.  A malformed input counts as one more failed line.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mosix.mosrun.batches.failed import FailedLog
from mosix.mosrun.batches.queue import QUEUED_MAX, TurnQueue
from mosix.mosrun.batches.reader import CommandLine, MalformedInput


class Backend(Protocol):
    @property
    def stopping(self) -> int | None:
        """The signal that asked mosrun to stop, or None."""

    def start(self, line: bytes) -> int:
        """Start running ``line``; returns its job id.  Raises OSError if it cannot."""

    def wait(self) -> tuple[int, bool]:
        """Block until a started job ends: its id and whether it succeeded."""


@dataclass
class Outcome:
    failed: int = 0  # lines that failed (a malformed input counts as one)
    ran: int = 0  # lines started
    refused: str | None = None  # why the rest of the file was not run
    stopped_by: int | None = None  # the signal that stopped mosrun
    failed_file_incomplete: bool = False

    def status(self) -> int:
        """The exit status of mosrun -S: the number of failed lines, 255 at most."""
        failed = self.failed
        if self.failed_file_incomplete:
            failed = max(failed, 1)
        return min(failed, 255)


@dataclass
class Scheduler:
    lines: Iterator[CommandLine]
    maxjobs: int
    backend: Backend
    log: FailedLog
    report: Callable[[str], None]
    queue: TurnQueue | None = None
    outcome: Outcome = field(default_factory=Outcome)
    running: dict[int, tuple[int, CommandLine]] = field(default_factory=dict)  # job -> seq, line
    queued: dict[int, CommandLine] = field(default_factory=dict)  # seq -> line
    held: CommandLine | None = None  # read, but could not start yet (EAGAIN)
    exhausted: bool = False

    def run(self) -> Outcome:
        while True:
            self.fill()
            if self.queued and self.queue is not None and self.take_turns():
                continue
            if not self.running:
                break
            self.reap(*self.backend.wait())
        out = self.outcome
        out.stopped_by = self.backend.stopping
        out.failed_file_incomplete = self.log.incomplete
        return out

    # ----------------------------------------------------------- starting

    def stopped(self) -> bool:
        if self.backend.stopping is not None:
            self.withdraw_queued()
            return True
        return self.exhausted

    def fill(self) -> None:
        """Start (or queue) lines while there is room."""
        while not self.stopped() and not self.log.full():
            if len(self.running) + len(self.queued) >= self.maxjobs:
                return
            if self.queue is not None and len(self.queued) >= QUEUED_MAX:
                return
            line = self.next_line()
            if line is None:
                return
            if self.queue is None:
                if not self.start(line):
                    return
            else:
                seq = self.log.started()
                self.queued[seq] = line
                self.queue.request(seq, line.text)

    def next_line(self) -> CommandLine | None:
        if self.held is not None:
            line, self.held = self.held, None
            return line
        try:
            return next(self.lines)
        except StopIteration:
            self.exhausted = True
        except MalformedInput as e:
            self.exhausted = True
            self.outcome.refused = str(e)
            self.outcome.failed += 1
            self.report(f"-S: {e}; no further lines were started")
        return None

    def start(self, line: CommandLine, seq: int | None = None) -> bool:
        """Start ``line`` (``seq``: its number if queued); False: wait for a line to end first."""
        try:
            job = self.backend.start(line.text)
        except OSError as e:
            if e.errno == errno.EAGAIN and self.running and seq is None:
                self.held = line  # out of processes: retry when a line ends
                return False
            self.report(f"-S: line {line.number}: cannot start: {e.strerror}")
            self.failed(self.log.started() if seq is None else seq, line)
            return True
        self.running[job] = (self.log.started() if seq is None else seq, line)
        self.outcome.ran += 1
        return True

    def take_turns(self) -> bool:
        """Start the queued lines whose turn came; True if any started."""
        assert self.queue is not None
        turns = self.queue.turns(block=not self.running)
        for seq in turns:
            self.start(self.queued.pop(seq), seq)
        refused = self.queue.aborted()
        for seq in refused:
            line = self.queued.pop(seq)
            self.report(f"-S: line {line.number}: the queue aborted it; it did not run")
            self.failed(seq, line)
        return bool(turns) or bool(refused)

    def withdraw_queued(self) -> None:
        for seq in list(self.queued):
            del self.queued[seq]
            if self.queue is not None:
                self.queue.withdraw(seq)
            self.log.withdrawn(seq)

    # ------------------------------------------------------------- ending

    def reap(self, job: int, succeeded: bool) -> None:
        entry = self.running.pop(job, None)
        if entry is None:
            return  # not one of ours (a child mosrun's caller left behind)
        seq, line = entry
        if self.queue is not None:
            self.queue.finished(seq)
        if succeeded:
            self.log.ended(seq, None)
        else:
            self.failed(seq, line)

    def failed(self, seq: int, line: CommandLine) -> None:
        self.outcome.failed += 1
        self.log.ended(seq, line.text)
