"""mosrun -S as an installed command, running real lines with bash."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest


def mosrun(
    *argv: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mosrun", *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mosrun: -S: "), result.stderr
    return lines[0]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_exit_status_is_the_number_of_failed_lines(tmp_path: Path) -> None:
    cmds = write(tmp_path / "c", ["true", "false", "exit 7", "echo out", "kill -9 $$", "true"])
    result = mosrun("-S3", str(cmds))
    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\n" and result.stderr == ""


def test_exit_status_capped_at_255(tmp_path: Path) -> None:
    cmds = write(tmp_path / "c", ["false"] * 300)
    assert mosrun("-S30", str(cmds)).returncode == 255


def test_all_lines_succeed_status_0_and_blank_lines_are_not_commands(tmp_path: Path) -> None:
    cmds = write(tmp_path / "c", ["", "echo a", "   ", "echo b", ""])
    result = mosrun("-S1", str(cmds))
    assert (result.returncode, result.stdout, result.stderr) == (0, "a\nb\n", "")


def test_failed_file_lists_failed_lines_as_written_in_file_order(tmp_path: Path) -> None:
    lines = [
        "sleep 0.3; exit 1  # ends last, listed first",
        "false",
        "true",
        "echo 'quoted  spaces' >/dev/null; exit 4",
        "kill -TERM $$",
        "exit 0",
    ]
    cmds = write(tmp_path / "c", lines)
    failed = tmp_path / "failed"
    result = mosrun("-S6", f"{cmds},{failed}")
    assert result.returncode == 4
    assert failed.read_text().splitlines() == [lines[0], lines[1], lines[3], lines[4]]


def test_failed_file_fed_back_reruns_only_the_failed_lines(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    lines = [f"echo {i} >> {marks}/ran; exit $(( {i} % 3 == 0 ))" for i in range(12)]
    cmds = write(tmp_path / "c", lines)
    failed1, failed2 = tmp_path / "f1", tmp_path / "f2"
    assert mosrun("-S4", f"{cmds},{failed1}").returncode == 4
    (marks / "ran").unlink()
    assert mosrun("-S4", f"{failed1},{failed2}").returncode == 4
    assert sorted(int(x) for x in (marks / "ran").read_text().split()) == [0, 3, 6, 9]
    assert failed2.read_text() == failed1.read_text()


def test_failed_file_created_even_when_nothing_fails(tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    failed.write_text("stale\n")
    cmds = write(tmp_path / "c", ["true"])
    assert mosrun("-S1", f"{cmds},{failed}").returncode == 0
    assert failed.read_text() == ""


def stamps(tmp_path: Path, count: int, maxjobs: int) -> list[tuple[int, int]]:
    out = tmp_path / "stamps"
    out.mkdir()
    line = "s=$(date +%s%N); sleep 0.3; e=$(date +%s%N); echo $s $e > {}/{}"
    cmds = write(tmp_path / "c", [line.format(out, i) for i in range(count)])
    result = mosrun(f"-S{maxjobs}", str(cmds))
    assert result.returncode == 0, result.stderr
    pairs = [(out / str(i)).read_text().split() for i in range(count)]
    return [(int(s), int(e)) for s, e in pairs]


def most_overlapping(spans: list[tuple[int, int]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, step in events:  # at equal times ends (-1) sort before starts
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize("maxjobs", [1, 3])
def test_at_most_maxjobs_lines_run_at_once_and_exactly_maxjobs_when_there_is_work(
    tmp_path: Path, maxjobs: int
) -> None:
    assert most_overlapping(stamps(tmp_path, 3 * maxjobs, maxjobs)) == maxjobs


def test_lines_start_in_file_order(tmp_path: Path) -> None:
    # the kernel numbers processes in creation order: each line's bash records its pid
    out = tmp_path / "pids"
    out.mkdir()
    cmds = write(tmp_path / "c", [f"echo $$ > {out}/{i}" for i in range(40)])
    assert mosrun("-S4", str(cmds)).returncode == 0
    pids = [int((out / str(i)).read_text()) for i in range(40)]
    assert pids == sorted(pids)


def test_mosrun_arguments_apply_to_every_line(tmp_path: Path) -> None:
    cmds = write(tmp_path / "c", ['echo "$MOSIX_INHERIT"'] * 3)
    result = mosrun("-J5", "-m300", "-e", "-S2", str(cmds))
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert set(line.split()) >= {"-J5", "-m300", "-e"}, line
    assert len(result.stdout.splitlines()) == 3


def test_lines_read_stdin_from_dev_null_and_do_not_get_mosrun_files(tmp_path: Path) -> None:
    cmds = write(
        tmp_path / "c",
        [
            "cat; readlink /proc/$$/fd/0; ls /proc/$$/fd | sort -n | tr '\\n' ' '; "
            "ls -l /proc/$$/fd >&2"  # on stderr: what an extra descriptor is, if one comes
        ],
    )
    result = subprocess.run(
        ["mosrun", "-S1", f"{cmds},{tmp_path / 'f'}"],
        input="not for the lines\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/dev/null", "0", "1", "2"], result.stderr


def test_commands_file_can_be_stdin(tmp_path: Path) -> None:
    result = subprocess.run(
        ["mosrun", "-S2", "/dev/stdin"],
        input="echo one\necho two >&2\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "one\n", "two\n")


# ----------------------------------------------------------------- bad input


def test_missing_commands_file(tmp_path: Path) -> None:
    result = mosrun("-S2", str(tmp_path / "nope"))
    assert result.returncode == 125
    assert "nope: cannot open: No such file or directory" in one_line_error(result)


def test_commands_file_is_a_directory(tmp_path: Path) -> None:
    result = mosrun("-S2", str(tmp_path))
    assert result.returncode == 125
    assert "is a directory" in one_line_error(result)


def test_failed_file_in_a_missing_directory_fails_before_any_line_runs(tmp_path: Path) -> None:
    cmds = write(tmp_path / "c", [f"touch {tmp_path}/ran"])
    result = mosrun("-S2", f"{cmds},{tmp_path}/no/such/dir/failed")
    assert result.returncode == 125
    assert "cannot create the failed-file: No such file or directory" in one_line_error(result)
    assert not (tmp_path / "ran").exists()


def test_failed_file_that_is_the_commands_file_is_refused(tmp_path: Path) -> None:
    cmds = write(tmp_path / "c", ["true"])
    result = mosrun("-S2", f"{cmds},{cmds}")
    assert result.returncode == 125
    assert "is the commands-file" in one_line_error(result)
    assert cmds.read_text() == "true\n"


def test_binary_commands_file_refused_naming_line_1_and_nothing_runs(tmp_path: Path) -> None:
    cmds = tmp_path / "c"
    cmds.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\ntouch ran\n")
    result = mosrun("-S2", str(cmds), cwd=tmp_path)
    assert result.returncode == 1
    assert "line 1 contains a NUL byte" in one_line_error(result)
    assert not (tmp_path / "ran").exists()


def test_nul_in_the_middle_runs_the_lines_before_and_stops(tmp_path: Path) -> None:
    cmds = tmp_path / "c"
    cmds.write_bytes(b"touch a\nfalse\ntouch b\nto\0uch c\ntouch d\n")
    result = mosrun("-S1", f"{cmds},{tmp_path / 'f'}", cwd=tmp_path)
    assert result.returncode == 2  # 'false' and the refused line
    assert "line 4 contains a NUL byte" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c", "f"]
    assert (tmp_path / "f").read_text() == "false\n"


def test_too_long_line_refused(tmp_path: Path) -> None:
    cmds = tmp_path / "c"
    cmds.write_bytes(b"true\necho " + b"x" * 200_000 + b"\n")
    result = mosrun("-S1", str(cmds))
    assert result.returncode == 1
    assert "line 2 is longer than 131071 bytes" in one_line_error(result)


def test_full_disk_for_failed_file_reported_once_and_lines_go_on(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    lines = [f"touch {marks}/{i}; exit $(( {i} % 2 ))" for i in range(10)]
    cmds = write(tmp_path / "c", lines)
    result = mosrun("-S2", f"{cmds},/dev/full")
    assert result.returncode == 5
    assert "/dev/full: cannot write: No space left on device" in one_line_error(result)
    assert sorted(int(p.name) for p in marks.iterdir()) == list(range(10))


# ------------------------------------------------------------------- signals


def wait_for_lines(fifo: Path, count: int, proc: subprocess.Popen[str]) -> None:
    """Block until ``count`` lines wrote 'ready' to ``fifo`` (each once it is set up)."""
    # opened for writing too, so the first line's close does not end the reading
    fd = os.open(fifo, os.O_RDWR)
    try:
        got = b""
        while got.count(b"ready\n") < count:
            readable, _, _ = select.select([fd], [], [], 30)
            if not readable:
                proc.kill()
                pytest.fail(f"lines did not start: {proc.communicate()}")
            got += os.read(fd, 100)
    finally:
        os.close(fd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_relayed_to_whole_lines_no_new_lines_and_mosrun_dies_by_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = f"sleep 60 >/dev/null 2>&1 & echo $! > {tmp_path}/bg.$$; echo ready > {fifo}; wait"
    cmds = write(tmp_path / "c", [line, line, f"touch {tmp_path}/third"])
    proc = subprocess.Popen(
        ["mosrun", "-S2", f"{cmds},{tmp_path / 'failed'}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_lines(fifo, 2, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -sig
    assert f"stopped by {sig.name} after starting 2 lines, 2 of them failed" in err
    assert not (tmp_path / "third").exists()
    assert (tmp_path / "failed").read_text() == line + "\n" + line + "\n"
    backgrounds = [int(bg.read_text()) for bg in tmp_path.glob("bg.*")]
    assert len(backgrounds) == 2
    if sig == signal.SIGINT:  # bash starts '&' children with SIGINT ignored
        for pid in backgrounds:
            with contextlib.suppress(ProcessLookupError):  # already gone is as good
                os.kill(pid, signal.SIGKILL)
    for pid in backgrounds:  # with SIGTERM, the lines' background children got it too
        assert not alive(pid)


def alive(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)  # polling for an exit (not synchronising a start)
    return True


def test_ignored_sigint_stays_ignored_by_mosrun_and_lines(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cmds = write(
        tmp_path / "c",
        [f"echo ready > {fifo}; read x < {tmp_path}/go; grep SigIgn /proc/$$/status"],
    )
    go = tmp_path / "go"
    os.mkfifo(go)
    proc = subprocess.Popen(
        ["mosrun", "-S1", str(cmds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    wait_for_lines(fifo, 1, proc)
    proc.send_signal(signal.SIGINT)
    with open(go, "w") as f:
        f.write("go\n")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    ignored = int(out.split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1))
