"""The -S scheduler with injected fakes: order, bound, failed-file order, queue, memory."""

from __future__ import annotations

import errno
import os
import random
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mosix.mosrun.batches.failed
from mosix.mosrun.batches.failed import FailedLog
from mosix.mosrun.batches.queue import QUEUED_MAX
from mosix.mosrun.batches.reader import CommandLine, command_lines
from mosix.mosrun.batches.scheduler import Outcome, Scheduler


def numbered(texts: Sequence[bytes]) -> Iterator[CommandLine]:
    return (CommandLine(i + 1, t) for i, t in enumerate(texts))


@dataclass
class FakeBackend:
    """Lines 'run' until wait() picks one to end; a line fails if it contains b'fail'."""

    pick: Callable[[list[int]], int] = lambda running: running[0]
    stopping: int | None = None
    started: list[bytes] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    texts: dict[int, bytes] = field(default_factory=dict)
    most_running: int = 0
    on_start: Callable[[FakeBackend], None] | None = None

    def start(self, line: bytes) -> int:
        job = len(self.started)
        self.started.append(line)
        self.texts[job] = line
        self.running.append(job)
        self.most_running = max(self.most_running, len(self.running))
        if self.on_start is not None:
            self.on_start(self)
        return job

    def wait(self) -> tuple[int, bool]:
        job = self.pick(self.running)
        self.running.remove(job)
        return job, b"fail" not in self.texts.pop(job)


def run(
    texts: Sequence[bytes],
    maxjobs: int,
    backend: FakeBackend,
    failed_fd: int | None = None,
    queue: object = None,
) -> tuple[Outcome, list[str]]:
    reports: list[str] = []
    log = FailedLog(failed_fd, "failed", reports.append)
    sched = Scheduler(numbered(texts), maxjobs, backend, log, reports.append, queue)  # type: ignore[arg-type]
    return sched.run(), reports


def test_lines_start_in_file_order_and_never_more_than_maxjobs() -> None:
    texts = [f"line {i}".encode() for i in range(100)]
    backend = FakeBackend(pick=lambda r: random.Random(len(r)).choice(r))
    outcome, _ = run(texts, 7, backend)
    assert backend.started == texts
    assert backend.most_running == 7
    assert (outcome.ran, outcome.failed, outcome.status()) == (100, 0, 0)


def test_failures_counted_and_capped_at_255() -> None:
    outcome, _ = run([b"fail"] * 300, 30, FakeBackend())
    assert (outcome.failed, outcome.status()) == (300, 255)


def test_failed_lines_written_in_file_order_when_they_end_out_of_order(tmp_path: Path) -> None:
    texts = [f"fail {i}".encode() if i % 3 == 0 else f"ok {i}".encode() for i in range(50)]
    path = tmp_path / "failed"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    # newest first: every line ends before the ones started earlier
    outcome, _ = run(texts, 5, FakeBackend(pick=lambda r: r[-1]), failed_fd=fd)
    os.close(fd)
    expected = [t for t in texts if t.startswith(b"fail")]
    assert path.read_bytes().splitlines() == expected
    assert outcome.failed == len(expected)


def test_failed_line_written_as_soon_as_earlier_lines_have_ended(tmp_path: Path) -> None:
    path = tmp_path / "failed"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    seen_at_start: list[bytes] = []

    def record(backend: FakeBackend) -> None:
        seen_at_start.append(path.read_bytes())

    run([b"fail 1", b"ok 2", b"fail 3", b"ok 4"], 1, FakeBackend(on_start=record), failed_fd=fd)
    os.close(fd)
    assert seen_at_start == [b"", b"fail 1\n", b"fail 1\n", b"fail 1\nfail 3\n"]


def test_window_of_unsettled_lines_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mosix.mosrun.batches.failed, "WINDOW_LINES", 20)
    texts = [f"fail {i}".encode() for i in range(200)]
    fd = os.open(tmp_path / "failed", os.O_WRONLY | os.O_CREAT)
    widest = 0
    log_ref: list[FailedLog] = []

    def watch(backend: FakeBackend) -> None:
        nonlocal widest
        widest = max(widest, log_ref[0].next - log_ref[0].head)

    backend = FakeBackend(pick=lambda r: r[-1] if len(r) > 1 else r[0], on_start=watch)
    log = FailedLog(fd, "failed", lambda m: None)
    log_ref.append(log)
    outcome = Scheduler(numbered(texts), 3, backend, log, lambda m: None).run()
    os.close(fd)
    assert outcome.failed == 200
    assert widest <= 20
    assert (tmp_path / "failed").read_bytes().splitlines() == texts


def test_write_error_reported_once_and_lines_go_on(tmp_path: Path) -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    texts = [b"fail 1", b"ok", b"fail 2", b"ok"]
    backend = FakeBackend()
    outcome, reports = run(texts, 2, backend, failed_fd=fd)
    os.close(fd)
    assert backend.started == texts
    assert len(reports) == 1 and "No space left on device" in reports[0]
    assert outcome.failed_file_incomplete and outcome.status() == 2


def test_malformed_input_stops_starting_waits_and_counts_one(tmp_path: Path) -> None:
    path = tmp_path / "cmds"
    path.write_bytes(b"ok 1\nfail 2\nok 3\nbad\0\nok 5\n")
    fd = os.open(path, os.O_RDONLY)
    reports: list[str] = []
    backend = FakeBackend()
    sched = Scheduler(
        command_lines(fd, "cmds"), 2, backend, FailedLog(None, "", reports.append), reports.append
    )
    outcome = sched.run()
    os.close(fd)
    assert backend.started == [b"ok 1", b"fail 2", b"ok 3"]
    assert backend.running == []
    assert outcome.failed == 2 and outcome.refused is not None
    assert reports == ["-S: cmds: line 4 contains a NUL byte (is it a binary file?); "
                       "no further lines were started"]  # fmt: skip


def test_stop_request_starts_nothing_more_but_waits_for_running_lines() -> None:
    texts = [f"line {i}".encode() for i in range(20)]

    def stop_at_fifth(backend: FakeBackend) -> None:
        if len(backend.started) == 5:
            backend.stopping = 15

    backend = FakeBackend(on_start=stop_at_fifth)
    outcome, _ = run(texts, 3, backend)
    assert backend.started == texts[:5] and backend.running == []
    assert outcome.stopped_by == 15 and outcome.ran == 5


def test_out_of_processes_waits_for_a_line_to_end_then_retries() -> None:
    texts = [f"line {i}".encode() for i in range(6)]

    class Limited(FakeBackend):
        def start(self, line: bytes) -> int:
            if len(self.running) >= 2:
                raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            return super().start(line)

    backend = Limited()
    outcome, reports = run(texts, 4, backend)
    assert backend.started == texts and reports == []
    assert outcome.failed == 0


@dataclass
class FakeQueue:
    """Grants turns in request order while fewer than ``capacity`` granted lines run."""

    capacity: int
    waiting: list[int] = field(default_factory=list)
    granted: int = 0
    most_waiting: int = 0
    most_granted: int = 0
    most_jobs: int = 0  # waiting plus granted (running)
    order: list[int] = field(default_factory=list)

    def request(self, seq: int, line: bytes) -> None:
        self.waiting.append(seq)
        self.most_waiting = max(self.most_waiting, len(self.waiting))
        self.most_jobs = max(self.most_jobs, len(self.waiting) + self.granted)

    def turns(self, block: bool) -> list[int]:
        out = []
        while self.waiting and self.granted < self.capacity:
            out.append(self.waiting.pop(0))
            self.granted += 1
        self.most_granted = max(self.most_granted, self.granted)
        assert out or not block, "blocking with nothing to grant would hang"
        self.order += out
        return out

    def withdraw(self, seq: int) -> None:
        self.waiting.remove(seq)

    def aborted(self) -> list[int]:
        return []

    def finished(self, seq: int) -> None:
        self.granted -= 1


def test_queue_holds_at_most_10_waiting_lines() -> None:
    texts = [f"line {i}".encode() for i in range(100)]
    queue = FakeQueue(capacity=3)
    backend = FakeBackend()
    outcome, _ = run(texts, 30, backend, queue=queue)
    assert queue.most_waiting == QUEUED_MAX  # the bound is reached, never passed
    assert queue.most_granted == 3 and backend.most_running == 3
    assert backend.started == texts and queue.order == list(range(100))
    assert outcome.ran == 100


def test_queued_and_running_lines_together_stay_within_maxjobs() -> None:
    queue = FakeQueue(capacity=4)
    backend = FakeBackend()
    run([b"x"] * 40, 5, backend, queue=queue)
    assert queue.most_jobs == 5 and backend.most_running == 4


def test_queued_lines_withdrawn_on_stop() -> None:
    queue = FakeQueue(capacity=1)

    def stop(backend: FakeBackend) -> None:
        backend.stopping = 2

    backend = FakeBackend(on_start=stop)
    outcome, _ = run([b"x"] * 30, 20, backend, queue=queue)
    assert backend.started == [b"x"] and queue.waiting == [] and outcome.ran == 1


def test_a_million_lines_stream_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "million"
    with open(path, "wb") as f:
        for i in range(1_000_000):
            f.write(b"fail %d\n" % i if i % 7 == 0 else b"my_program -a%d > out%d\n" % (i, i))
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    failed_fd = os.open(os.devnull, os.O_WRONLY)
    rng = random.Random(1)
    backend = FakeBackend(pick=lambda r: r[rng.randrange(len(r))])
    backend.started = _CountOnly()  # type: ignore[assignment]
    tracemalloc.start()
    try:
        log = FailedLog(failed_fd, "failed", lambda m: None)
        outcome = Scheduler(command_lines(fd, "million"), 16, backend, log, lambda m: None).run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(fd)
        os.close(failed_fd)
    assert outcome.ran == 1_000_000 and outcome.failed == 142_858
    assert peak < 2 * 1024 * 1024 < size / 10, (peak, size)


class _CountOnly(list):  # type: ignore[type-arg]
    """A list that only counts appends (the fake backend must not hold every line)."""

    count = 0

    def append(self, item: object) -> None:
        self.count += 1

    def __len__(self) -> int:
        return self.count
