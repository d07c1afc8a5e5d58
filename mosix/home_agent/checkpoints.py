"""Checkpoints of the node's MOSIX processes: names, counting, triggers.

The agent owns each process's checkpoint series (-C, -N, -A and how many
were taken), so every trigger numbers files the same way: a manual request
(``migrate PID checkpoint|chkstop|chkexit``), the program's own request
(through its guard), and -A's periodic timer.  The capture itself is the C
checkpointer (csrc/ckpt/mosix_ckpt.c), run once per checkpoint; Python never
touches the image.  One capture per process at a time.

-A's timer counts wall-clock minutes from the start (the manual's "every given
number of minutes"), and when one is due it waits only while the process
stays in the blocking call it is in or stays frozen, as the manual says: a
process that runs (R) is taken at once, one found blocked (S/D) as soon as it
has run since (its context-switch count moved: the call completed, even if it
is blocked in another by the time the agent looks), one stopped or frozen (T)
once it has run again after that.  A process that runs on another node is captured there
and here (``Away``, mosix.home_agent.away_checkpoint); its deputy always
looks blocked, and the node holds the copy until its call at home returns.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from mosix.ckpt.image import ImageError, ImageHead, read_head
from mosix.ckpt.naming import series
from mosix.home_agent.registry import Registration
from mosix.native import capturer
from mosix.protocol import Checkpointed
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")
RUN_POLL_SECONDS = 0.1  # how often a delayed -A checkpoint looks whether the process runs
CAPTURE_ACTIONS = {"checkpoint": "none", "chkstop": "stop", "chkexit": "exit"}


class CheckpointError(Exception):
    """A checkpoint that could not be attempted or whose capture failed (one line)."""


class Away(Protocol):
    """The captures of processes that run on other nodes."""

    def is_away(self, pid: int) -> bool: ...

    async def capture(
        self, pid: int, to_file: capturer.ToFile, action: str
    ) -> subprocess.CompletedProcess[bytes]: ...


@dataclass
class Capture:
    pid: int
    path: str  # absolute
    number: int
    taken: int  # the series' count with this one


def plan(reg: Registration) -> Capture:
    """The file and number of ``reg``'s next checkpoint (names relative to its cwd)."""
    s = series(os.fsdecode(reg.ckpt_file), reg.pid, reg.ckpt_limit)
    name = s.name(reg.ckpt_taken)
    if not os.path.isabs(name):
        try:
            cwd = os.readlink(f"/proc/{reg.pid}/cwd")
        except OSError as e:
            raise CheckpointError(f"process {reg.pid}: {e.strerror}") from None
        name = os.path.join(cwd, name)
    return Capture(reg.pid, name, s.number(reg.ckpt_taken), reg.ckpt_taken + 1)


def to_file(reg: Registration, cap: Capture, action: str) -> capturer.ToFile:
    s = series(os.fsdecode(reg.ckpt_file), reg.pid, reg.ckpt_limit)
    options = {
        "checkpoint-file": f"{s.base}.{s.first}",  # parses back to the same series
        "checkpoint-next": str(cap.taken),
        "checkpoint-limit": str(reg.ckpt_limit),
        "checkpoint-interval": str(reg.ckpt_interval),
    }
    return capturer.ToFile(cap.path, CAPTURE_ACTIONS[action], reg.pid, options)


def users_image_head(path: str, uid: int) -> ImageHead:
    """The head of the image at ``path`` if it is a regular file of ``uid``: the agent
    (root) reads only what that user could have written there, never through a link
    at the end, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ImageError(e.strerror or str(e)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            raise ImageError("not a checkpoint file of the process's user")
        try:
            return read_head(f)
        except OSError as e:
            raise ImageError(e.strerror or str(e)) from None


async def reap_copies(pid: int) -> None:
    """After a capture that failed (its capturer killed, say): the frozen copy it left
    as a zombie of ``pid`` (no exit signal: the program's wait() never reaps it)."""
    for child in proc_info.children(pid):
        if proc_info.is_checkpoint_copy(child):  # dying or dead
            try:
                await capturer.reap_copy(child, pid)
            except capturer.CaptureFailed as e:
                log.warning("process %d keeps the copy %d: %s", pid, child, e.reason)


class Checkpoints:
    def __init__(
        self,
        registration_of: Callable[[int], Registration],
        minute: float,
        persist: Callable[[], None] = lambda: None,
        away: Away | None = None,
    ) -> None:
        self.registration_of = registration_of  # raises CheckpointError for a non-MOSIX pid
        self.minute = minute  # seconds in an -A minute (configurable for tests)
        self.locks: dict[int, trio.Lock] = {}
        self.timers: dict[int, trio.CancelScope] = {}
        self.away = away  # this node's processes elsewhere (None: a one-node cluster)
        self.persist = persist  # saves the agent's state now

    def is_away(self, pid: int) -> bool:
        return self.away is not None and self.away.is_away(pid)

    async def take(self, pid: int, action: str) -> Checkpointed:
        lock = self.locks.setdefault(pid, trio.Lock())
        async with lock:
            reg = self.registration_of(pid)
            if reg.state in ("frozen", "freezing"):  # the manual: none until it is unfrozen
                raise CheckpointError(f"process {pid} is {reg.state}")
            cap = plan(reg)
            # the number is taken before the capture, and saved: an agent killed while
            # the capturer writes never gives another checkpoint the same number
            reg.ckpt_taken = cap.taken
            self.persist()
            before, reg.state = reg.state, "checkpointing"
            try:
                if self.away is not None and self.away.is_away(pid):
                    spec = to_file(reg, cap, "checkpoint")  # the node acts on the copy
                    result = await self.away.capture(pid, spec, CAPTURE_ACTIONS[action])
                else:
                    result = await to_file(reg, cap, action).run()
            finally:
                reg.state = before
            try:
                capturer.check(result)
            except capturer.CaptureRefused as e:  # counted, as the manual says
                # from the capturer's stderr: the file is never read back (as root, its
                # name could by then lead anywhere)
                reason = e.reason or "cannot be checkpointed"
                log.info("checkpoint of %d refused: %s", pid, reason)
                return Checkpointed(path=os.fsencode(cap.path), number=cap.number, failed=reason)
            except capturer.CaptureFailed as e:
                if reg.ckpt_taken == cap.taken:  # nothing was written under that name
                    reg.ckpt_taken = cap.taken - 1
                await reap_copies(pid)
                raise CheckpointError(e.reason or f"checkpoint of {pid} failed") from None
            log.info("checkpoint of %d written to %s", pid, cap.path)
            return Checkpointed(path=os.fsencode(cap.path), number=cap.number)

    # ------------------------------------------------------------- -A

    def schedule(self, nursery: trio.Nursery, reg: Registration) -> None:
        """(Re)start -A's timer for ``reg`` (none when its interval is 0)."""
        old = self.timers.pop(reg.pid, None)
        if old is not None:
            old.cancel()
        if reg.ckpt_interval > 0:
            scope = trio.CancelScope()
            self.timers[reg.pid] = scope
            nursery.start_soon(self.periodic, reg, scope)

    async def periodic(self, reg: Registration, scope: trio.CancelScope) -> None:
        with scope:
            period = reg.ckpt_interval * self.minute
            due = trio.current_time() + period
            while proc_info.alive(reg.pid, reg.start_ticks):
                await trio.sleep_until(due)
                if not await self.ready(reg):
                    return
                try:
                    await self.take(reg.pid, "checkpoint")
                except CheckpointError as e:
                    log.warning("periodic checkpoint of %d: %s", reg.pid, e)
                due += period
                if due <= trio.current_time():  # delayed past the next one: count anew
                    due = trio.current_time() + period
        if self.timers.get(reg.pid) is scope:
            del self.timers[reg.pid]

    async def ready(self, reg: Registration) -> bool:
        """Wait until a due checkpoint may be taken (False: the process ended).

        At once when it runs or is away (its node holds the copy until a call at
        home returns); when it is in a blocking call, once it has run since then
        (its context switches moved); stopped or frozen: once it has run again.
        """
        blocked_at: int | None = None  # the switch count when it was seen blocked
        while True:
            letter = proc_info.state_letter(reg.pid)
            if letter in (None, "Z", "X") or not proc_info.alive(reg.pid, reg.start_ticks):
                return False
            if letter == "R" or self.is_away(reg.pid):
                return True
            if letter in ("T", "t"):
                blocked_at = None  # stopped: what counts is running after it continues
            else:
                switches = proc_info.context_switches(reg.pid)
                if blocked_at is not None and switches != blocked_at:
                    return True
                blocked_at = switches
            await trio.sleep(RUN_POLL_SECONDS)


def last_image(registration_of: Callable[[int], Registration], pid: int) -> str | None:
    """The newest checkpoint file of ``pid`` that holds an image of it (None:
    none); what a process whose remote node is lost resumes from."""
    try:
        reg = registration_of(pid)
    except CheckpointError:
        return None
    s = series(os.fsdecode(reg.ckpt_file), reg.pid, reg.ckpt_limit)
    kept = min(reg.ckpt_taken, reg.ckpt_limit) if reg.ckpt_limit else reg.ckpt_taken
    for taken in range(reg.ckpt_taken - 1, reg.ckpt_taken - 1 - kept, -1):
        name = s.name(taken)
        if not os.path.isabs(name):
            try:
                name = os.path.join(os.readlink(f"/proc/{pid}/cwd"), name)
            except OSError:
                return None
        try:
            if users_image_head(name, reg.uid).pid == pid:
                return name
        except ImageError:
            continue  # failed when taken (pipes, sockets), damaged, gone, or not theirs
    return None
