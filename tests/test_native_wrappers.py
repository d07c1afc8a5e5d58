"""The wrappers of the C helpers (mosix.native.capturer, remote_supervisor, deputy,
restorer): their argument lists, and the capturer's failures, from real runs of
mosix-ckpt, as exceptions."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from support.waiting import wait_until

from mosix.native import NATIVE_DIR, capturer, deputy, remote_supervisor, restorer
from mosix.native.helper_process import close_process
from mosix.native_names import CkptExit, CkptLine, RemoteLine
from mosix.sysinfo.proc_info import real_uid

CKPT = str(NATIVE_DIR / "mosix-ckpt")


def test_to_file_argv() -> None:
    spec = capturer.ToFile("/d/ckpt.1", "stop", 42, {"checkpoint-next": "2", "a": "b=c"})
    head = [CKPT, "-o", "/d/ckpt.1", "-a", "stop", "-O", "checkpoint-next=2", "-O", "a=b=c"]
    assert spec.argv() == [*head, "42"]
    assert spec.argv(away_fd=9) == [*head, "-i", "9", "42"]


def test_migrate_argv_with_the_deputys_words() -> None:
    assert capturer.migrate_argv(7, 42) == [CKPT, "-f", "7", "-a", "migrate", "42"]
    words = deputy.argv("/run/s", "tok")
    assert words == [
        str(NATIVE_DIR / "mosix-deputy"),
        *["-a", "/run/s", "-k", "tok", "-r", str(NATIVE_DIR / "mosix-restore")],
    ]
    dashed = [w for word in words for w in ("-D", word)]
    assert capturer.migrate_argv(7, 42, words) == [CKPT, "-f", "7", "-a", "migrate", *dashed, "42"]


def test_remote_supervisor_argv() -> None:
    tools = ["-e", str(NATIVE_DIR / "mosix-exec"), "-r", str(NATIVE_DIR / "mosix-restore")]
    plain = remote_supervisor.Supervise(chan_fd=5, img_fd=6, mode="e", home_pid=99)
    assert plain.argv() == [
        str(NATIVE_DIR / "mosix-remote"),
        *["-c", "5", "-i", "6", "-m", "e", "-p", "99", *tools],
    ]
    assert plain.fds() == (6, 5)
    full = remote_supervisor.Supervise(5, 6, "w", 99, direct_fds=(7, 8), time_here=True)
    assert full.argv()[1:7] == ["-c", "5", "-d", "7", "-d", "8"] and full.argv()[-1] == "-t"
    assert full.fds() == (6, 5, 7, 8)


def test_remote_supervisor_reports() -> None:
    assert remote_supervisor.report(b"ready 1234") == (RemoteLine.READY, "1234")
    assert remote_supervisor.report(b"failed no memory here") == (
        RemoteLine.FAILED,
        "no memory here",
    )
    assert remote_supervisor.report(b"quiet") == (RemoteLine.QUIET, "")


def test_restorer_argv() -> None:
    path = str(NATIVE_DIR / "mosix-restore")
    assert restorer.argv("mosrun: -Rf", 10) == [path, "-p", "mosrun: -Rf", "10"]
    assert restorer.argv("mosrun: -Rf", 10, 11) == [path, "-p", "mosrun: -Rf", "-e", "11", "10"]


# ------------------------------------------------------------------ real failures


@contextmanager
def target(argv: list[str], **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, **popen)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run_to_file(spec: capturer.ToFile) -> None:
    async def main() -> None:
        capturer.check(await spec.run())

    trio.run(main)


def test_usage_becomes_capture_usage(tmp_path: Path) -> None:
    with (
        target(["sleep", "60"], stdin=subprocess.DEVNULL) as t,
        pytest.raises(capturer.CaptureUsage) as e,
    ):
        run_to_file(capturer.ToFile(str(tmp_path / "c"), "bogus", t.pid))
    assert e.value.status == CkptExit.USAGE
    assert e.value.reason.startswith("mosix-ckpt: -a bogus: none, stop, exit or migrate")


def test_refusal_becomes_capture_refused(tmp_path: Path) -> None:
    rd, wr = os.pipe()
    try:  # an open pipe cannot be checkpointed
        with target(["sleep", "60"], stdin=subprocess.DEVNULL, pass_fds=(rd,)) as t:
            with pytest.raises(capturer.CaptureRefused) as e:
                run_to_file(capturer.ToFile(str(tmp_path / "c"), "none", t.pid))
            why = f"it has an open pipe (descriptor {rd})"
            assert e.value.reason == f"mosrun: checkpoint of process {t.pid} failed: {why}"
    finally:
        os.close(rd)
        os.close(wr)


def test_another_users_process_becomes_capture_denied(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (and setpriv) to run a process as another user")
    nobody = pwd.getpwnam("nobody")
    ids = ["--reuid", str(nobody.pw_uid), "--regid", str(nobody.pw_gid), "--clear-groups"]
    with target(["setpriv", *ids, "sleep", "60"], stdin=subprocess.DEVNULL) as t:
        wait_until(lambda: real_uid(t.pid) == nobody.pw_uid, what="setpriv to become nobody")
        with pytest.raises(capturer.CaptureDenied) as e:
            run_to_file(capturer.ToFile(str(tmp_path / "c"), "none", t.pid))
    assert "does not run under the MOSIX discipline" in e.value.reason
    assert list(tmp_path.iterdir()) == []


def test_other_failures_are_capture_failed() -> None:
    async def main() -> None:
        await capturer.reap_copy(1, os.getpid())

    with pytest.raises(capturer.CaptureFailed) as e:
        trio.run(main)
    assert type(e.value) is capturer.CaptureFailed and e.value.status == CkptExit.FAILED
    assert (
        e.value.reason == f"mosix-ckpt: process 1 is not a leftover copy of process {os.getpid()}"
    )
    assert str(e.value) == e.value.reason


def test_resume_after_a_streamed_capture_becomes_capture_abandoned(tmp_path: Path) -> None:
    async def main(pid: int, fd: int) -> None:
        proc = await capturer.start_migrate(fd, pid)
        try:
            assert await capturer.captured(proc)
            await capturer.order(proc, CkptLine.RESUME)
            await capturer.ended(proc)
        finally:
            await close_process(proc)

    with target(["sleep", "60"], stdin=subprocess.DEVNULL) as t:
        fd = os.open(tmp_path / "image", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(capturer.CaptureAbandoned) as e:
                trio.run(main, t.pid, fd)
        finally:
            os.close(fd)
        assert e.value.status == CkptExit.ABANDONED and t.poll() is None
    assert (tmp_path / "image").read_bytes().startswith(b"MOSIXCKP")
