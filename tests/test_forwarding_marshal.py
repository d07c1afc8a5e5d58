"""csrc/forward/forward_marshal.c end to end on a real kernel (tests/cprogs/forward_harness.c).

A child runs under the generated forward filter; its parent takes the
user-notification listener and serves every call with fwd_request ->
fwd_execute -> fwd_apply, in its own directory and with its own pid, so each
check proves the call ran in the parent.  fwd_execute is also given malformed
requests (hypothesis) in a process where every system call they could reach
is refused, built with the address and undefined-behaviour sanitizers.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from discipline_helpers import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cbuild import build_c

from mosix.discipline.forwarding import FORWARDING, Placement
from mosix.discipline.policy import BY_NAME

CSRC = REPO / "csrc"
HARNESS = REPO / "tests" / "cprogs" / "forward_harness.c"
# both sides, as the harness runs both; another process's memory, as mosix-remote reaches it
MARSHALLER = [
    CSRC / "forward" / f"{name}.c"
    for name in ("forward_marshal", "forward_request", "forward_memory_vm", "forward_execute")
]
INCLUDES = [arg for d in ("forward", "generated") for arg in ("-I", str(CSRC / d))]
CFLAGS = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror", *INCLUDES]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
TIMEOUT = 120

REQUEST_MAGIC, REPLY_MAGIC = 0x51445746, 0x52445746


def words(text: str) -> list[str]:
    return text.split()


CHECKS = words("""getpid gettid getcwd umask uname clock_gettime getppid chdir chdir_back
open_write_read
openat pread_pwrite readv_writev preadv_pwritev stat fcntl_ofd_lock fcntl_lock fcntl_val readlink
getdents64 rename_unlink efault mmap_anon big_write_clamped big_read_clamped big_close
ioctl_unknown close poll select pipe sendmsg_recvmsg scm_rights sendto_recvfrom getsockname
sockopt close_sockets openpty tiocgwinsz termios fionread close_pty""")


def _build(out: Path, extra: list[str]) -> Path:
    return build_c([HARNESS, *MARSHALLER], out, *CFLAGS, *extra)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("fwd") / "forward_harness", [])


@pytest.fixture(scope="module")
def fuzz_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("fwdfuzz") / "forward_harness", SANITIZE)


@pytest.fixture(scope="module")
def session(harness: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("fwdrun")
    parent, child = (base / "home").resolve(), (base / "remote").resolve()
    parent.mkdir()
    child.mkdir()
    result = subprocess.run(
        [str(harness), "run", str(parent), str(child)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    lines = result.stdout.splitlines()
    return {"result": result, "lines": lines, "home": parent, "remote": child}


def test_the_script_runs_to_the_end(session: dict) -> None:
    result = session["result"]
    assert "child started" in session["lines"], result.stderr
    assert "failures 0" in session["lines"], result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    served = re.search(r"served (\d+) calls, 0 errors", result.stderr)
    assert served and int(served.group(1)) > len(CHECKS), result.stderr


@pytest.mark.parametrize("name", CHECKS)
def test_check(session: dict, name: str) -> None:
    """Each check of the child's script (its line says what differed)."""
    mine = [line for line in session["lines"] if line.split(" ")[0] == name]
    assert mine == [f"{name} ok"], mine or session["result"].stderr


def test_files_are_written_at_home(session: dict) -> None:
    home, remote = session["home"], session["remote"]
    assert (home / "data.txt").read_bytes().startswith(b"hello XYZwarded world")
    assert os.readlink(home / "link") == "data.txt"
    assert (home / "sub").is_dir()
    assert not (home / "data2.txt").exists() and not (home / "data3.txt").exists()
    assert sorted(p.name for p in remote.iterdir()) == []
    inode = next(line for line in session["lines"] if line.startswith("inode "))
    assert int(inode.split()[1]) == (home / "data.txt").stat().st_ino


def test_a_3_mib_write_is_cut_short(session: dict) -> None:
    line = next(line for line in session["lines"] if line.startswith("big_write "))
    wrote = int(line.split()[1])
    assert 512 * 1024 < wrote < 3 << 20
    assert (session["home"] / "big.bin").stat().st_size == wrote


# ---------------------------------------------------------------- malformed input


def request(nr: int, args: list[int], spans: list[tuple[int, int, int]], data: bytes) -> bytes:
    head = struct.pack("<II6Q", REQUEST_MAGIC, nr, *args)
    for off, in_len, out_len in spans:
        head += struct.pack("<4I", off, in_len, out_len, 0)
    head += struct.pack("<II", len(data), 0)
    return head + data


NO_SPAN = (0, 0, 0)


def run_fuzz(exe: Path, blobs: list[bytes], small: list[bool] | None = None) -> dict[str, int]:
    small = small or [False] * len(blobs)
    stream = b"".join(
        struct.pack("<I", len(b) | (0x8000_0000 if s else 0)) + b
        for b, s in zip(blobs, small, strict=True)
    )
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99")
    result = subprocess.run(
        [str(exe), "fuzz"], input=stream, capture_output=True, timeout=TIMEOUT, env=env
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    words = result.stdout.split()
    counts = {words[i].decode(): int(words[i + 1]) for i in range(0, len(words), 2)}
    assert counts["requests"] == len(blobs)
    return counts


def test_malformed_requests_are_refused(fuzz_harness: Path) -> None:
    read, openat = BY_NAME["read"].nr, BY_NAME["openat"].nr
    good_path = request(openat, [0, 1, 0, 0, 0, 0], [NO_SPAN, (0, 5, 0), *[NO_SPAN] * 4], b"/etc\0")
    bad = [
        b"",
        b"\x00" * 10,
        request(read, [0, 1, 16, 0, 0, 0], [NO_SPAN, (0, 0, 17), *[NO_SPAN] * 4], b""),  # size
        request(read, [0, 2, 16, 0, 0, 0], [NO_SPAN, (0, 0, 16), *[NO_SPAN] * 4], b""),  # not 0/1
        request(read, [0, 0, 16, 0, 0, 0], [NO_SPAN, (0, 0, 16), *[NO_SPAN] * 4], b""),  # null
        request(openat, [0, 1, 0, 0, 0, 0], [NO_SPAN, (0, 6, 0), *[NO_SPAN] * 4], b"/etc\0"),
        request(openat, [0, 1, 0, 0, 0, 0], [NO_SPAN, (0, 4, 0), *[NO_SPAN] * 4], b"/etc\0"),
        request(openat, [0, 1, 0, 0, 0, 0], [NO_SPAN, (8, 5, 0), *[NO_SPAN] * 4], b"/etc\0"),
        good_path[:-1],  # data shorter than the head says
        good_path + b"\0",  # longer
        request(
            BY_NAME["writev"].nr, [1, 1, 2000, 0, 0, 0], [NO_SPAN, (0, 0, 0), *[NO_SPAN] * 4], b""
        ),
    ]
    counts = run_fuzz(fuzz_harness, [*bad, good_path])
    assert counts["invalid"] == len(bad)
    assert counts["other"] == 1  # the good one reached the kernel (and the filter's EPERM)


def test_a_reply_that_does_not_fit_is_refused(fuzz_harness: Path) -> None:
    uname = BY_NAME["uname"].nr
    blob = request(uname, [1, 0, 0, 0, 0, 0], [(0, 0, 390), *[NO_SPAN] * 5], b"")
    counts = run_fuzz(fuzz_harness, [blob, blob], small=[True, False])
    assert counts["nobufs"] == 1 and counts["other"] == 1


FORWARDED = sorted(
    BY_NAME[name].nr
    for name, f in FORWARDING.items()
    if any(s.placement in (Placement.HOME, Placement.TIME) for s in f.specs())
)
word = st.one_of(
    st.sampled_from([0, 1, 2, 8, 16, 4096, 2**32 - 1, 2**64 - 1]), st.integers(0, 2**64 - 1)
)
u32 = st.one_of(
    st.sampled_from([0, 1, 4, 8, 160, 4096, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)
)


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    nr = draw(st.one_of(st.sampled_from(FORWARDED), st.integers(0, 2**32 - 1)))
    args = [draw(st.one_of(st.sampled_from([0, 1]), word)) for _ in range(6)]
    data = draw(st.binary(max_size=300))
    spans = [
        draw(st.one_of(st.just(NO_SPAN), st.tuples(st.integers(0, 320), st.integers(0, 320), u32)))
        for _ in range(6)
    ]
    blob = request(nr, args, spans, data)
    if draw(st.booleans()):  # a damaged copy: cut, or bytes flipped
        cut = draw(st.integers(0, len(blob)))
        blob = blob[:cut] + draw(st.binary(max_size=40))
    return blob


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blobs=st.lists(requests(), min_size=1, max_size=25), small=st.booleans())
def test_fwd_execute_survives_any_request(
    fuzz_harness: Path, blobs: list[bytes], small: bool
) -> None:
    run_fuzz(fuzz_harness, blobs, [small] * len(blobs))
