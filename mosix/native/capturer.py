"""mosix-ckpt (csrc/ckpt/mosix_ckpt.c), the capturer: every run of it starts here.

Its argument lists (:class:`ToFile` for a checkpoint file, :func:`start_migrate`
for an image streamed on a descriptor, :func:`reap_copy`), its lines on stdin and
stdout (``CkptLine``) and its exit statuses (``CkptExit``), both named once in
mosix.native_names and shared with the C side; :func:`failure` turns a status and
the first line of its stderr into a :class:`CaptureFailed`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import trio

from mosix.native import native_path
from mosix.native_names import CkptExit, CkptLine, Program, order_line

PROGRAM = Program.CAPTURER


class CaptureFailed(Exception):
    """mosix-ckpt ended with ``status``; ``reason`` is its stderr's first line ("": none)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason or f"{PROGRAM} ended with status {status}")
        self.status = status
        self.reason = reason


class CaptureRefused(CaptureFailed):
    """The process cannot be checkpointed (REFUSED): a checkpoint that counts."""


class CaptureDenied(CaptureFailed):
    """We may not checkpoint the process (DENIED): nothing was created."""


class CaptureNotYet(CaptureFailed):
    """The process cannot be captured yet (NOT_YET: threads, for a migration): nothing created."""


class CaptureUsage(CaptureFailed):
    """mosix-ckpt refused its arguments (USAGE): a bug of ours."""


class CaptureAbandoned(CaptureFailed):
    """-a migrate, told to resume: the process goes on here."""


FAILURES: dict[int, type[CaptureFailed]] = {
    CkptExit.REFUSED: CaptureRefused,
    CkptExit.DENIED: CaptureDenied,
    CkptExit.NOT_YET: CaptureNotYet,
    CkptExit.USAGE: CaptureUsage,
    CkptExit.ABANDONED: CaptureAbandoned,
}


def first_line(data: bytes) -> str:
    return data.decode(errors="replace").strip().splitlines()[0] if data.strip() else ""


def failure(status: int, stderr: bytes) -> CaptureFailed:
    """The exception for a run that ended with ``status`` (not OK) and ``stderr``."""
    return FAILURES.get(status, CaptureFailed)(status, first_line(stderr))


def check(result: subprocess.CompletedProcess[bytes]) -> None:
    """Raise :func:`failure` for a finished run that did not end with OK."""
    if result.returncode != CkptExit.OK:
        raise failure(result.returncode, result.stderr or b"")


# ------------------------------------------------------------------ to a file


@dataclass(frozen=True)
class ToFile:
    """``mosix-ckpt -o PATH -a ACTION [-O KEY=VALUE]... PID``: a checkpoint file."""

    path: str
    action: str  # none, stop or exit
    pid: int
    options: Mapping[str, str] = field(default_factory=dict)

    def argv(self, away_fd: int | None = None) -> list[str]:
        """With ``away_fd``: PID is a deputy, its copy's image comes on that descriptor."""
        argv = [native_path(PROGRAM), "-o", self.path, "-a", self.action]
        for key, value in self.options.items():
            argv += ["-O", f"{key}={value}"]
        if away_fd is not None:
            argv += ["-i", str(away_fd)]
        return [*argv, str(self.pid)]

    async def run(self, away_fd: int | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run it to its end (stdout and stderr captured; :func:`check` judges)."""
        return await trio.run_process(
            self.argv(away_fd),
            pass_fds=() if away_fd is None else (away_fd,),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


# ------------------------------------------------------------------ streamed


def migrate_argv(
    fd: int, pid: int, deputy: Sequence[str] = (), precopy: int | None = None
) -> list[str]:
    """``mosix-ckpt -f FD -a migrate [-D WORD]... [-P ROUNDS -T] PID``: the image
    streamed on FD, the process held until told (:class:`CkptLine`); with ``deputy``,
    it then becomes it.  With ``precopy``, its memory goes first while it runs (the
    receiver must be a restorer that takes the rounds), and the timings line at the
    end (:func:`precopy_summary`) says how many rounds went."""
    words = [w for word in deputy for w in ("-D", word)]
    rounds = [] if precopy is None else ["-P", str(precopy), "-T"]
    return [native_path(PROGRAM), "-f", str(fd), "-a", "migrate", *words, *rounds, str(pid)]


async def start_migrate(
    fd: int, pid: int, deputy: Sequence[str] = (), precopy: int | None = None
) -> trio.Process:
    """The capturer of :func:`migrate_argv`, its three pipes ours (end it with
    mosix.native.helper_process.close_process).  ``fd`` stays open here."""
    return await trio.lowlevel.open_process(
        migrate_argv(fd, pid, deputy, precopy),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(fd,),
    )


def freeze_argv(path: str, pid: int, deputy: Sequence[str]) -> list[str]:
    """``mosix-ckpt -o PATH -a migrate [-D WORD]... PID``: the image written to a file
    (as the process's user), the process held until told, then it becomes the deputy."""
    words = [w for word in deputy for w in ("-D", word)]
    return [native_path(PROGRAM), "-o", path, "-a", "migrate", *words, str(pid)]


async def start_freeze(path: str, pid: int, deputy: Sequence[str]) -> trio.Process:
    """The capturer of :func:`freeze_argv`, its three pipes ours (as :func:`start_migrate`)."""
    return await trio.lowlevel.open_process(
        freeze_argv(path, pid, deputy),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def order(proc: trio.Process, line: CkptLine) -> None:
    """Tell a capturer of :func:`start_migrate` to go on (GO) or to let go (RESUME)."""
    assert proc.stdin is not None
    await proc.stdin.send_all(order_line(line))


async def captured(proc: trio.Process) -> bool:
    """Whether the capturer says the image is complete (its first line)."""
    assert proc.stdout is not None
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip() == CkptLine.CAPTURED


async def stderr_line(proc: trio.Process) -> str:
    """The first line of what the capturer said on stderr ("": nothing)."""
    assert proc.stderr is not None
    return first_line(await proc.stderr.receive_some(4096))


# -T's steps of the final hold, microseconds from its start: the image written, "captured"
# said, "go" heard, the process handed to its deputy.
HOLD_STEPS = ("image_us", "captured_us", "go_us", "handed_us")


async def precopy_summary(proc: trio.Process) -> str:
    """After a capturer with ``precopy`` ended well: "rounds=N pages=M ..." from its
    timings line ("" if it said none): the rounds (the first included) and the pages
    they sent; unreliable=1 when nothing could be kept (a child shared its pages); the
    pages of the final image, the final pause and the longest pause of a round."""
    assert proc.stderr is not None
    text = (await proc.stderr.receive_some(65536)).decode(errors="replace")
    for line in text.splitlines():
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "precopy_rounds" in fields:
            return (
                f"rounds={fields['precopy_rounds']} pages={fields.get('precopy_pages', '?')} "
                f"unreliable={fields.get('precopy_unreliable', '?')} "
                f"final_pages={fields.get('pages', '?')} pause_us={fields.get('pause_us', '?')} "
                f"round_pause_us={fields.get('precopy_pause_us', '?')} "
                + " ".join(f"{k}={fields.get(k, '?')}" for k in HOLD_STEPS)
            )
    return ""


async def ended(proc: trio.Process) -> None:
    """Wait for a capturer of :func:`start_migrate`; raise :func:`failure` unless OK."""
    status = await proc.wait()
    if status != CkptExit.OK:
        assert proc.stderr is not None
        raise failure(status, await proc.stderr.receive_some(4096))


# ------------------------------------------------------------------ the sweep


async def reap_copy(copy: int, pid: int) -> None:
    """``mosix-ckpt -Z COPY PID``: reap the frozen copy a killed capture left as a
    zombie of ``pid``; :class:`CaptureFailed` when it could not."""
    result = await trio.run_process(
        [native_path(PROGRAM), "-Z", str(copy), str(pid)], capture_stderr=True, check=False
    )
    check(result)
