"""The restorer, mosix-restore, on real processes: synthetic images (tests/ckpt_images.py)
restored end to end, with and without the discipline, and every kind of damaged image
refused with exit status 125 and exactly one line on stderr, never a signal death."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import ckpt_images as ci
import pytest
from support.cbuild import build_c
from support.waiting import wait_until

from mosix.ckpt import format as F

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 restorer")

TIMEOUT = 60
REFUSED = 125
PAGE = F.PAGE_SIZE
PREFIX = "mosix-restore: "


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ci.RESTORER.exists():
        pytest.fail(f"{ci.RESTORER} is missing (python setup.py build_native)")
    return tmp_path_factory.mktemp("restore-build")


@pytest.fixture(scope="module")
def host(build: Path) -> ci.Host:
    return ci.host_facts(build)


@pytest.fixture(scope="module")
def tiny(host: ci.Host) -> ci.Image:
    return ci.tiny_image(host)


@pytest.fixture(scope="module")
def payload_exe(build: Path) -> Path:
    return ci.build_payload(build)


# ------------------------------------------------------------------ running it


def restorer_argv(fd: int, args: Sequence[str], discipline: str | None) -> list[str]:
    argv = [str(ci.RESTORER), *args, str(fd)]
    if discipline is None:
        return argv
    launcher = [str(ci.LAUNCHER), "-m", discipline, "-p", "mosrun", "-s", str(ci.SHIM), "--"]
    return [*launcher, str(ci.RESTORER), "mosix-restore", *args, str(fd)]


def restore(
    data: bytes,
    tmp_path: Path,
    *args: str,
    discipline: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the restorer on ``data`` from a file descriptor (not its stdin)."""
    path = tmp_path / "image"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return subprocess.run(
            restorer_argv(fd, args, discipline),
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        os.close(fd)


def restore_streamed(
    data: bytes, fd: int, writer: socket.socket | int
) -> subprocess.CompletedProcess[str]:
    """Run the restorer reading ``fd`` while a thread writes ``data`` in small pieces."""

    def feed() -> None:
        for at in range(0, len(data), 1000):
            piece = data[at : at + 1000]
            if isinstance(writer, socket.socket):
                writer.sendall(piece)
            else:
                os.write(writer, piece)
            time.sleep(0.0005)
        if isinstance(writer, socket.socket):
            writer.close()
        else:
            os.close(writer)

    thread = threading.Thread(target=feed)
    proc = subprocess.Popen(
        [str(ci.RESTORER), str(fd)],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(fd)
    thread.start()
    out, err = proc.communicate(timeout=TIMEOUT)
    thread.join()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_refused(
    result: subprocess.CompletedProcess[str], reason: str | None = None, prefix: str = PREFIX
) -> None:
    assert result.returncode == REFUSED, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n"), result.stderr
    assert lines[0].startswith(prefix), result.stderr
    if reason is not None:
        assert reason in lines[0], result.stderr


# ------------------------------------------------------------------ restores that work


def test_tiny_restores(tiny: ci.Image, tmp_path: Path) -> None:
    result = restore(tiny.encode(), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


def test_version_2_image_restores(tiny: ci.Image, tmp_path: Path) -> None:
    """Version 3 only added MAPFILE records: a version 2 image is read as before."""
    image = tiny.copy()
    image.header = ci.file_header(version=2)
    result = restore(image.encode(), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


# ------------------------------------------------------------------ file pages referenced


def referencing(
    tiny: ci.Image, tmp_path: Path, stored: int = 0, **fields: int
) -> tuple[ci.Image, Path]:
    """tiny with its code (and a second page) mapped from a file: a REFERENCE area whose
    first ``stored`` pages are stored, the others referenced; ``fields`` change MAPFILE."""
    image = tiny.copy()
    at = next(i for i, a in enumerate(image.areas) if a.start == ci.CODE)
    code = image.areas[at]
    text = code.pages[0][1][:PAGE]
    second = bytes(range(256)) * (PAGE // 256)
    path = tmp_path / "code.bin"
    path.write_bytes((bytes(PAGE) if stored else text) + second)  # a stored page wins
    pages = [(ci.CODE, text)] if stored else []
    referenced = second if stored else text + second
    image.areas[at] = ci.Area(
        ci.CODE,
        ci.CODE + 2 * PAGE,
        code.prot,
        F.AreaFlag.FILE | F.AreaFlag.REFERENCE,
        bytes(path),
        pages,
    )
    image.mapfiles = [ci.mapfile_payload(path, referenced, **fields)]
    return image, path


@pytest.mark.parametrize("stored", [0, 1])
def test_referenced_file_pages_restore(tiny: ci.Image, tmp_path: Path, stored: int) -> None:
    image, _ = referencing(tiny, tmp_path, stored)
    result = restore(image.encode(), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


def test_referenced_file_missing_or_other_is_refused_naming_it(
    tiny: ci.Image, tmp_path: Path
) -> None:
    cases: list[tuple[dict[str, int], str]] = [
        ({"mtime_ns": 1}, "differs from when the checkpoint was taken (another file"),
        ({"size": 2 * PAGE + 1}, "differs from when the checkpoint was taken (another file"),
        ({"ino": 1}, "differs from when the checkpoint was taken (another file"),
    ]
    for fields, reason in cases:
        image, path = referencing(tiny, tmp_path, **fields)
        for args in ((), ("-c",)):
            result = restore(image.encode(), tmp_path, *args)
            assert_refused(result, reason)
            assert str(path) in result.stderr
    image, path = referencing(tiny, tmp_path)
    path.unlink()
    result = restore(image.encode(), tmp_path)
    assert_refused(result, f"the file {path} the image refers to cannot be opened")


def test_referenced_file_with_other_contents_is_refused(tiny: ci.Image, tmp_path: Path) -> None:
    image, path = referencing(tiny, tmp_path, hash=12345)
    result = restore(image.encode(), tmp_path)
    assert_refused(
        result, f"the file {path} differs from when the checkpoint was taken (its contents)"
    )


def test_bad_file_references_are_refused(tiny: ci.Image, tmp_path: Path) -> None:
    image, path = referencing(tiny, tmp_path)
    at = next(i for i, a in enumerate(image.areas) if a.start == ci.CODE)
    good = image.areas[at]
    flags = F.AreaFlag.FILE | F.AreaFlag.REFERENCE
    past_end = (ci.CODE + PAGE, bytes(PAGE))
    variants = [
        (ci.Area(good.start, good.end, good.prot, flags, good.name, mapfile=1), "reference"),
        (ci.Area(good.start, good.end, good.prot, F.AreaFlag.REFERENCE, good.name), "reference"),
        (
            ci.Area(good.start, good.end, good.prot, F.AreaFlag.FILE, good.name, mapfile=1),
            "file reference in an area without REFERENCE",
        ),
        (ci.Area(good.start, good.end, good.prot, flags, b"/elsewhere"), "named otherwise"),
        (ci.Area(good.start, good.end, good.prot, flags, good.name, pgoff=100), "reference"),
    ]
    for area, reason in variants:
        bad = image.copy()
        bad.areas[at] = area
        for args in ((), ("-c",)):
            assert_refused(restore(bad.encode(), tmp_path, *args), reason)
    short, _ = referencing(tiny, tmp_path)
    path.write_bytes(path.read_bytes()[:PAGE])  # one page: the second is past its end
    short.areas[at] = ci.Area(good.start, good.end, good.prot, flags, good.name, [past_end])
    short.mapfiles = [ci.mapfile_payload(path, path.read_bytes())]
    assert_refused(restore(short.encode(), tmp_path, "-c"), "past the end of the file")
    bad_path = image.copy()
    bad_path.mapfiles = [image.mapfiles[0][: F.MAPFILE.size] + b"relative"]
    assert_refused(restore(bad_path.encode(), tmp_path, "-c"), "MAPFILE path")


def test_vdso_hash_unknown(tiny: ci.Image, tmp_path: Path) -> None:
    """An image whose capturer did not record the vdso's checksum (0) is restored."""
    image = tiny.copy()
    image.process["vdso_hash"] = 0
    result = restore(image.encode(), tmp_path)
    assert (result.returncode, result.stdout) == (ci.TINY_STATUS, "restored\n")


def test_tiny_check_only(tiny: ci.Image, tmp_path: Path) -> None:
    result = restore(tiny.encode(), tmp_path, "-c")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("mode", ["u", "e", "w"])
def test_tiny_restores_under_discipline(tiny: ci.Image, tmp_path: Path, mode: str) -> None:
    result = restore(tiny.encode(), tmp_path, discipline=mode)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


def test_tiny_from_a_pipe(tiny: ci.Image) -> None:
    r, w = os.pipe()
    result = restore_streamed(tiny.encode(), r, w)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


def test_tiny_from_a_nonblocking_socket(tiny: ci.Image) -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    fd = os.dup(theirs.fileno())
    theirs.close()
    result = restore_streamed(tiny.encode(), fd, ours)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


def test_files_and_filedata_are_skipped(tiny: ci.Image, tmp_path: Path) -> None:
    image = tiny.copy()
    path = b"/tmp/some file"
    f = F.FILE.pack(fd=5, kind=F.FileKind.UNLINKED, flags=2, path_len=len(path)) + path
    data = F.FILEDATA.pack(fd=5, offset=0) + b"contents"
    image.files = [(F.Kind.FILE, f), (F.Kind.FILEDATA, data), (F.Kind.FILE, f)]
    result = restore(image.encode(), tmp_path)
    assert (result.returncode, result.stdout) == (ci.TINY_STATUS, "restored\n")


def test_large_area_with_sparse_pages(host: ci.Host, tmp_path: Path) -> None:
    """A 2 GiB area (MAP_NORESERVE) with a few stored pages, a PROT_NONE area."""
    image = ci.tiny_image(host)
    big = 0x500000000
    stored = [(big, b"\x01" * ci.PAGE * 3), (big + (1 << 31) - ci.PAGE, b"\x02" * ci.PAGE)]
    image.areas.append(ci.Area(big, big + (1 << 31), ci.PROT_R | ci.PROT_W, 0, b"", stored))
    image.areas.append(ci.Area(0x600000000, 0x600000000 + (1 << 32), 0))
    image.areas = ci.sorted_areas(image.areas)
    result = restore(image.encode(), tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (ci.TINY_STATUS, "restored\n", "")


# ------------------------------------------------------------------ the restored state


def run_payload(
    host: ci.Host,
    exe: Path,
    tmp_path: Path,
    discipline: str | None = None,
    requests: int = 0,
    shim: tuple[int, int] | None = None,
) -> tuple[ci.Payload, dict[str, str], dict[str, str]]:
    payload = ci.payload_image(host, exe, requests=requests, avx=bool(host.xcr0 & 4))
    if shim is not None:
        kind, mode = shim
        text = next(a for a in payload.image.areas if a.prot & ci.PROT_X and a.flags & ci.A.FILE)
        payload.image.process.update(
            shim_kind=kind, shim_mode=mode, shim_lo=text.start, shim_hi=text.end
        )
    result = restore(payload.image.encode(), tmp_path, discipline=discipline)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert result.stderr == ""
    values, dumps = ci.parse_payload_output(result.stdout)
    assert result.stdout.endswith("done\n")
    return payload, values, dumps


def h(v: int) -> str:
    return hex(v)


def check_payload_state(payload: ci.Payload, values: dict[str, str], avx: bool) -> None:
    image, sym = payload.image, payload.symbols
    for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp"):
        assert values[name] == h(image.regs[name]), name
    for n in range(8, 16):
        assert values[f"r{n}"] == h(image.regs[f"r{n}"]), f"r{n}"
    assert values["eflags"] == h(0x203)
    assert values["xmm0_lo"] == h(0x1122334455667788)
    assert values["xmm0_hi"] == h(0x99AABBCCDDEEFF00)
    assert values["mxcsr"] == h(0x1FA0)
    assert values["fcw"] == h(0x27F)
    if avx:
        assert values["ymm0_hi_lo"] == h(0x0123456789ABCDEF)
        assert values["ymm0_hi_hi"] == h(0xFEDCBA9876543210)
    assert values["fs_base"] == h(sym["payload_tls"])
    assert values["fs_word"] == h(0x7465737473746C73)
    assert values["gs_base"] == h(0x12345000)
    assert values["sigmask"] == h(image.process["sigmask"])  # type: ignore[arg-type]
    assert values["altstack_sp"] == h(sym["payload_altstack"])
    assert values["altstack_size"] == h(16384)
    assert values["comm"] == "payload-test"
    assert values["tid_word"] == h(0xFFFFFFFF)  # the image's: libc's cached id is kept
    assert values["robust_head"] == h(sym["payload_robust"])
    assert values["robust_len"] == h(24)
    assert int(values["rseq_cpu_id"], 16) < 4096  # the kernel wrote a cpu number there
    real = [int(x, 16) for x in values["itimer0x0"].split()]
    assert real[:2] == [0, 0] and 990 <= real[2] <= 1000
    virtual = [int(x, 16) for x in values["itimer0x1"].split()]
    assert virtual[:2] == [5, 0] and 99 <= virtual[2] <= 100
    assert values["itimer0x2"].split() == ["0x0"] * 4
    sa = [int(x, 16) for x in values["sigusr1"].split()]
    assert sa == [
        0,
        sym["payload_usr1"],
        ci.SA_RESTORER | ci.SA_ONSTACK,
        sym["payload_sigreturn"],
        1 << (ci.SIGUSR2 - 1),
    ]
    assert [int(x, 16) for x in values["sigusr2"].split()][1] == 1  # SIG_IGN
    assert [int(x, 16) for x in values["sigsys"].split()][1] == sym["payload_sigsys"]
    assert values["kill"] == "0x0" and values["usr1_seen"] == h(ci.SIGUSR1)
    on_altstack = int(values["usr1_sp"], 16) - sym["payload_altstack"]
    assert 0 < on_altstack < 16384


def check_payload_kernel_view(payload: ci.Payload, dumps: dict[str, str]) -> None:
    p = payload.image.process
    maps = dumps["/proc/self/maps"]
    assert re.search(rf"^{ci.HEAP_LO:x}-{ci.HEAP_HI:x} rw-p .*\[heap\]$", maps, re.M)
    assert re.search(rf"^{ci.STACK_LO:x}-{ci.STACK_HI:x} rw-p .*\[stack\]$", maps, re.M)
    vdso = p["vdso"]
    assert isinstance(vdso, tuple)
    assert re.search(rf"^{vdso[0]:x}-{vdso[1]:x} r-xp .*\[vdso\]$", maps, re.M)
    starts = [int(line.split("-")[0], 16) for line in maps.splitlines()]
    restorer = range(F.RESTORER_BASE, F.RESTORER_BASE + F.RESTORER_SPAN)
    assert not [s for s in starts if s in restorer], maps
    leftovers = [s for s in starts if F.TRAMPOLINE <= s < F.TRAMPOLINE + F.TRAMPOLINE_SPAN]
    assert leftovers and leftovers[0] == F.TRAMPOLINE
    stat = dumps["/proc/self/stat"].split(") ")[1].split()
    # fields from 3 on: startcode 26, endcode 27, startstack 28, start_data 45 ... env_end 51
    assert [int(stat[i - 3]) for i in (26, 27, 28)] == [
        p["start_code"],
        p["end_code"],
        p["start_stack"],
    ]
    names = ("start_data", "end_data", "start_brk", "arg_start", "arg_end", "env_start", "env_end")
    assert [int(x) for x in stat[45 - 3 : 52 - 3]] == [p[n] for n in names]
    assert dumps["/proc/self/cmdline"].split() == ["payload", "--restored"]


def test_payload_state(host: ci.Host, payload_exe: Path, tmp_path: Path) -> None:
    payload, values, dumps = run_payload(host, payload_exe, tmp_path)
    check_payload_state(payload, values, avx=bool(host.xcr0 & 4))
    check_payload_kernel_view(payload, dumps)
    assert "Seccomp_filters:\t0" in dumps["/proc/self/status"]


def test_payload_state_under_discipline(host: ci.Host, payload_exe: Path, tmp_path: Path) -> None:
    payload, values, dumps = run_payload(host, payload_exe, tmp_path, discipline="u")
    check_payload_state(payload, values, avx=bool(host.xcr0 & 4))
    check_payload_kernel_view(payload, dumps)
    status = dumps["/proc/self/status"]
    assert "Seccomp_filters:\t1" in status and "NoNewPrivs:\t1" in status


def test_memory_use_follows_the_stored_pages(
    host: ci.Host, payload_exe: Path, tmp_path: Path
) -> None:
    """Stored pages are resident (populated), pages not stored stay unallocated, and no
    page is larger than the process had (no transparent huge pages added)."""
    payload = ci.payload_image(host, payload_exe)
    dense, sparse = 0x200000000, 0x300000000
    mib = 1 << 20
    image = payload.image
    filled = bytes(range(256)) * (8 * mib // 256)
    image.areas.append(
        ci.Area(dense, dense + 8 * mib, ci.PROT_R | ci.PROT_W, 0, b"", [(dense, filled)])
    )
    scattered = [(sparse + i * 4 * mib, b"\x01" * ci.PAGE) for i in range(16)]
    image.areas.append(ci.Area(sparse, sparse + 64 * mib, ci.PROT_R | ci.PROT_W, 0, b"", scattered))
    image.areas = ci.sorted_areas(image.areas)
    result = restore(image.encode(), tmp_path)
    assert result.returncode == 0, result.stderr
    _, dumps = ci.parse_payload_output(result.stdout)
    rollup = dict(
        (line.split(":")[0], int(line.split()[1]))
        for line in dumps["/proc/self/smaps_rollup"].splitlines()[1:]
        if line.endswith("kB")
    )
    assert rollup["AnonHugePages"] == 0
    assert 8 * 1024 + 16 * 4 <= rollup["Rss"] < 8 * 1024 + 16 * 4 + 2048


def test_shim_enosys_filter_is_reinstalled(
    host: ci.Host, payload_exe: Path, tmp_path: Path
) -> None:
    """Under -u an unsupported call kills; the shim's -e filter over the program's text
    (restored from the image) makes it fail with ENOSYS instead."""
    shim = (F.ShimKind.ENOSYS, 1)
    _, values, dumps = run_payload(
        host, payload_exe, tmp_path, discipline="u", requests=1, shim=shim
    )
    assert int(values["syslog"], 16) == (1 << 64) - 38  # -ENOSYS
    # the base filter, the shim's, and the thread id filter of a recovery with the shim
    assert "Seccomp_filters:\t3" in dumps["/proc/self/status"]


def test_shim_notify_filter_is_reinstalled(
    host: ci.Host, payload_exe: Path, tmp_path: Path
) -> None:
    _, _, dumps = run_payload(
        host, payload_exe, tmp_path, discipline="u", shim=(F.ShimKind.NOTIFY, 0)
    )
    assert "Seccomp_filters:\t3" in dumps["/proc/self/status"]  # base, shim's, thread ids


def test_unsupported_call_without_shim_is_killed(
    host: ci.Host, payload_exe: Path, tmp_path: Path
) -> None:
    """The counterpart of the test above: the discipline is in force after a restore."""
    payload = ci.payload_image(host, payload_exe, requests=1)
    result = restore(payload.image.encode(), tmp_path, discipline="u")
    assert result.returncode == -9
    assert "unsupported system call syslog" in result.stderr


# ------------------------------------------------------------------ refusals


def test_usage(tmp_path: Path) -> None:
    for argv in ([], ["-x", "3"], ["3", "4"], ["-p"], ["abc"], ["-c"]):
        result = subprocess.run(
            [str(ci.RESTORER), *argv], capture_output=True, text=True, timeout=TIMEOUT
        )
        assert_refused(result, "usage: mosix-restore")


def test_prefix(tmp_path: Path) -> None:
    result = restore(b"garbage", tmp_path, "-p", "mosrun: -Rimg")
    assert_refused(result, "not a checkpoint image", prefix="mosrun: -Rimg: ")


def test_closed_descriptor() -> None:
    result = subprocess.run(
        [str(ci.RESTORER), "99"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert_refused(result, "cannot read the image: Bad file descriptor")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not a checkpoint image"),
        (b"MOSIX", "not a checkpoint image"),
        (b"ELF\x7f" * 100, "not a checkpoint image"),
        (b"MOSIXCKP", "truncated image"),
        (b"mosrun: cannot checkpoint: the process has an open pipe\n", "an open pipe"),
        (b"mosrun: ", "the checkpoint failed"),
    ],
)
def test_not_an_image(data: bytes, reason: str, tmp_path: Path) -> None:
    for args in ((), ("-c",)):
        assert_refused(restore(data, tmp_path, *args), reason)


def test_failed_checkpoint_message_is_one_clean_line(tmp_path: Path) -> None:
    data = b"mosrun: cannot checkpoint\x1b[31m: set-id\nsecond line\n"
    result = restore(data, tmp_path, "-p", "mosrun: -Rx")
    assert_refused(result, prefix="mosrun: -Rx: ")
    assert result.stderr == "mosrun: -Rx: cannot checkpoint?[31m: set-id\n"


def test_file_header_fields(tiny: ci.Image, tmp_path: Path) -> None:
    def with_header(**fields: object) -> bytes:
        image = tiny.copy()
        image.header = ci.file_header(**fields)  # type: ignore[arg-type]
        return image.encode()

    cases = [
        ({"magic": b"MOSIXCKQ"}, "not a checkpoint image"),
        (
            {"version": F.VERSION + 1},
            f"image version {F.VERSION + 1}, this mosrun reads versions "
            f"{F.OLDEST_VERSION} to {F.VERSION}",
        ),
        (
            {"version": F.OLDEST_VERSION - 1},
            f"image version {F.OLDEST_VERSION - 1}, this mosrun reads versions "
            f"{F.OLDEST_VERSION} to {F.VERSION}",
        ),
        ({"arch": 183}, "image from another architecture"),
        ({"page_size": 16384}, "image from another architecture"),
        ({"header_size": 72}, "corrupted image (file header"),
        ({"flags": 1}, "corrupted image (file header"),
    ]
    for fields, reason in cases:
        for args in ((), ("-c",)):
            assert_refused(restore(with_header(**fields), tmp_path, *args), reason)


def test_truncated_at_every_boundary_and_middle(tiny: ci.Image, tmp_path: Path) -> None:
    parts = tiny.parts()
    cuts: set[int] = set()
    at = 0
    for part in parts:
        cuts.update({at, at + 8, at + 31, at + len(part) // 2})
        at += len(part)
    cuts.discard(0)
    for cut in sorted(c for c in cuts if c < at):
        for args in ((), ("-c",)):
            result = restore(tiny.encode()[:cut], tmp_path, *args)
            assert_refused(result, "truncated image" if cut >= 8 else "not a checkpoint")


def test_missing_end(tiny: ci.Image, tmp_path: Path) -> None:
    records = tiny.records()[:-1]
    for args in ((), ("-c",)):
        assert_refused(restore(ci.encode_records(records), tmp_path, *args), "truncated image")


def test_extra_bytes_after_end(tiny: ci.Image, tmp_path: Path) -> None:
    for extra in (b"\0", b"MOSIXCKP", tiny.parts()[1]):
        for args in ((), ("-c",)):
            result = restore(tiny.encode() + extra, tmp_path, *args)
            assert_refused(result, "data after the end")


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_one_flipped_bit_anywhere(tiny: ci.Image, tmp_path: Path) -> None:
    """Every byte of every header and a spread of payload bytes, each bit index in turn."""
    parts = tiny.parts()
    data = b"".join(parts)
    positions: list[int] = list(range(64))
    at = 64
    for part in parts[1:]:
        positions += range(at, at + 32)
        payload = len(part) - 32
        positions += sorted({at + 32 + i for i in (0, payload // 3, payload // 2, payload - 1)})
        at += len(part)
    for n, pos in enumerate(positions):
        args = ("-c",) if n % 4 else ()  # a quarter of them through the real restore
        result = restore(flip(data, pos * 8 + n % 8), tmp_path, *args)
        assert_refused(result)


def test_record_checksums_name_the_record(tiny: ci.Image, tmp_path: Path) -> None:
    parts = tiny.parts()
    at = sum(len(p) for p in parts[:4])  # record 3 (REGS): flip a payload byte
    data = flip(b"".join(parts), (at + 32) * 8)
    assert_refused(restore(data, tmp_path), "corrupted image (record 3: checksum mismatch)")
    data = flip(b"".join(parts), (at + 3) * 8)  # its header
    assert_refused(restore(data, tmp_path), "record 3: header checksum mismatch")


def test_huge_length(tiny: ci.Image, tmp_path: Path) -> None:
    records = tiny.records()
    head = ci.file_header() + ci.record(records[0][0], records[0][1], 0)
    for length in (F.MAX_RECORD_BYTES + 1, 1 << 62, (1 << 64) - 1):
        data = head + ci.record_header(F.Kind.OPTIONS, length, 0, 1) + b"x" * 100
        assert_refused(restore(data, tmp_path, "-c"), "length too large")


def test_records_out_of_order(tiny: ci.Image, tmp_path: Path) -> None:
    records = tiny.records()
    swapped = [records[1], records[0], *records[2:]]
    assert_refused(restore(ci.encode_records(swapped), tmp_path), "out of order")
    no_options = [records[0], *records[2:]]
    assert_refused(restore(ci.encode_records(no_options), tmp_path), "CWD out of order")
    twice = [*records[:5], records[4], *records[5:]]  # XSTATE twice
    assert_refused(restore(ci.encode_records(twice), tmp_path), "out of order")
    pages_first = [*records[:6], records[7], records[6], *records[8:]]  # PAGES before AREA
    assert_refused(restore(ci.encode_records(pages_first), tmp_path), "PAGES out of order")


def test_wrong_sequence_number(tiny: ci.Image, tmp_path: Path) -> None:
    records = tiny.records()
    data = ci.file_header() + b"".join(
        ci.record(k, p, i + (i >= 3)) for i, (k, p) in enumerate(records)
    )
    assert_refused(restore(data, tmp_path), "record 3: sequence number 0x4")


def test_end_counts(tiny: ci.Image, tmp_path: Path) -> None:
    records = tiny.records()
    end = F.END.unpack(records[-1][1])
    for field, delta in (("records", 1), ("areas", -1), ("pages", 1)):
        bad = dict(end)
        bad[field] = int(bad[field]) + delta  # type: ignore[call-overload]
        data = ci.encode_records([*records[:-1], (F.Kind.END, F.END.pack(**bad))])
        assert_refused(restore(data, tmp_path), "counts differ")


def variant(tiny: ci.Image, change: str) -> ci.Image:
    """The tiny image with one thing wrong (checksums still right)."""
    image = tiny.copy()
    code, stack = image.areas[0], next(a for a in image.areas if a.flags & ci.A.STACK)
    if change == "overlap":
        image.areas.insert(1, ci.Area(code.start + ci.PAGE * 0, code.end + ci.PAGE, ci.PROT_R))
    elif change == "unaligned":
        code.end += 8
    elif change == "kernel":
        image.areas.append(ci.Area(0x7FFFFFFFF000, 0x800000001000, ci.PROT_R))
    elif change == "far_kernel":
        image.areas.append(ci.Area(0xFFFF800000000000, 0xFFFF800000001000, ci.PROT_R))
    elif change == "restorer":
        image.areas.insert(1, ci.Area(F.RESTORER_BASE, F.RESTORER_BASE + ci.PAGE, ci.PROT_R))
    elif change == "trampoline":
        image.areas.insert(1, ci.Area(F.TRAMPOLINE, F.TRAMPOLINE + ci.PAGE, ci.PROT_R))
    elif change == "zero":
        image.areas.insert(0, ci.Area(0, ci.PAGE, ci.PROT_R))
    elif change == "empty":
        image.areas.insert(0, ci.Area(0x10000, 0x10000, ci.PROT_R))
    elif change == "pages_outside":
        code.pages.append((code.end, b"\0" * ci.PAGE))
    elif change == "pages_straddle":
        stack.pages = [(stack.end - ci.PAGE, b"\0" * 2 * ci.PAGE)]
    elif change == "pages_unaligned":
        stack.pages = [(stack.start + 8, b"\0" * ci.PAGE)]
    elif change == "pages_descending":
        stack.pages = [(stack.start + ci.PAGE, b"\0" * ci.PAGE), (stack.start, b"\0" * ci.PAGE)]
    elif change == "shared_writable":
        image.areas.insert(1, ci.Area(0x500000, 0x501000, ci.PROT_R | ci.PROT_W, ci.A.SHARED))
    elif change == "restorer_flag":
        image.areas.insert(1, ci.Area(0x500000, 0x501000, ci.PROT_R, ci.A.RESTORER))
    elif change == "unknown_flag":
        code.flags |= 0x8000
    elif change == "vdso_moved":
        vdso = next(a for a in image.areas if a.flags & ci.A.VDSO)
        vdso.start += ci.PAGE
        vdso.end += ci.PAGE
    elif change == "vdso_missing":
        image.areas = [a for a in image.areas if not a.flags & ci.A.VDSO]
    elif change == "vdso_pages":
        vdso = next(a for a in image.areas if a.flags & ci.A.VDSO)
        vdso.pages = [(vdso.start, b"\0" * ci.PAGE)]
    elif change == "over_vdso":
        vdso = next(a for a in image.areas if a.flags & ci.A.VDSO)
        vdso.flags = 0
    elif change == "rip_not_exec":
        image.regs["rip"] = stack.start
    elif change == "tid_readonly":
        image.process["tid_addr"] = code.start
    else:
        raise AssertionError(change)
    image.areas = ci.sorted_areas(image.areas)
    return image


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("overlap", "overlaps the previous area"),
        ("unaligned", "is not page-aligned"),
        ("kernel", "is in kernel space"),
        ("far_kernel", "is in kernel space"),
        ("restorer", "overlaps the restorer"),
        ("trampoline", "overlaps the restorer"),
        ("zero", "below the lowest user address"),
        ("empty", "is empty"),
        ("pages_outside", "pages outside their area"),
        ("pages_straddle", "pages outside their area"),
        ("pages_unaligned", "pages outside their area"),
        ("pages_descending", "pages outside their area"),
        ("shared_writable", "writable shared memory"),
        ("restorer_flag", "restorer's leftover"),
        ("unknown_flag", "unknown area flags"),
        ("vdso_moved", "does not match the process's vdso"),
        ("vdso_missing", "vdso or vvar area missing"),
        ("vdso_pages", "PAGES out of order"),
        ("over_vdso", "overlaps the vdso"),
        ("rip_not_exec", "resume address not in executable memory"),
        ("tid_readonly", "thread id address not in writable memory"),
    ],
)
def test_bad_memory_layout(tiny: ci.Image, tmp_path: Path, change: str, reason: str) -> None:
    data = variant(tiny, change).encode()
    for args in ((), ("-c",)):
        assert_refused(restore(data, tmp_path, *args), reason)


PROCESS_CHANGES: list[tuple[dict[str, object], str]] = [
    ({"xfeatures": 0x2E7}, "this CPU lacks features the image uses (xfeatures 0x2e7 vs"),
    ({"cpuid_7_ebx": 0xFFFFFFFF}, "this CPU lacks features the image uses (cpuid 7 ebx"),
    ({"xsave_size": 2688}, "XSAVE"),
    ({"shim_kind": 7}, "unknown shim filter"),
    ({"rseq_len": 32, "rseq_addr": 0x400001}, "rseq area"),
    ({"robust_list": 0x400000, "robust_len": 8}, "robust list"),
    ({"start_code": 0x500000}, "memory layout out of order"),
    ({"start_brk": 0x800000000000}, "memory layout address"),
    ({"auxv_words": 3}, "auxiliary vector"),
    ({"auxv_words": 200}, "auxiliary vector"),
    ({"itimers": (0, 1000000)}, "interval timer"),
    ({"altstack_flags": 77}, "signal stack flags"),
    ({"vdso": (0x1000, 0x3000)}, "the image's vdso differs from this kernel's"),
    ({"vdso_hash": 12345}, "the image's vdso differs from this kernel's (another kernel's code)"),
    ({"vdso": (F.RESTORER_BASE, F.RESTORER_BASE + 0x2000)}, "vdso address"),
    ({"vdso": (F.TRAMPOLINE - 0x1000, F.TRAMPOLINE + 0x1000)}, "vdso address"),
]


@pytest.mark.parametrize(("fields", "reason"), PROCESS_CHANGES)
def test_bad_process_record(
    host: ci.Host, tmp_path: Path, fields: dict[str, object], reason: str
) -> None:
    image = ci.tiny_image(host)
    image.process.update(fields)
    if "vdso" in fields:  # keep the AREA records agreeing: the kernel check is the point
        vdso = next(a for a in image.areas if a.flags & ci.A.VDSO)
        vdso.start, vdso.end = fields["vdso"]  # type: ignore[misc]
        image.areas = ci.sorted_areas(image.areas)
    if "xsave_size" in fields:
        image.xstate = image.xstate + bytes(int(fields["xsave_size"]) - len(image.xstate))  # type: ignore[call-overload]
    for args in ((), ("-c",)):
        assert_refused(restore(image.encode(), tmp_path, *args), reason)


def test_bad_registers_and_xstate(tiny: ci.Image, tmp_path: Path) -> None:
    # a state component this CPU does not enable (PKRU, bit 9, is enabled on some)
    xfeatures = int(tiny.process["xfeatures"])  # type: ignore[call-overload]
    absent = next(1 << bit for bit in range(2, 63) if not xfeatures & (1 << bit))
    cases: list[tuple[str, object, str]] = [
        ("regs", {"cs": 0x23}, "not a 64-bit process"),
        ("regs", {"rip": 0xFFFFFFFFFF600000}, "resume address"),
        ("regs", {"fs_base": 0xFFFF800000000000}, "thread pointer in kernel space"),
        ("xstate", (24, 0xFFFF0000), "MXCSR"),
        ("xstate", (512, absent), "XSAVE features"),
        ("xstate", (520, 1 << 63), "XSAVE header not in the standard form"),
        ("xstate_len", 100, "wrong length"),
    ]
    for what, change, reason in cases:
        image = tiny.copy()
        if what == "regs":
            image.regs.update(change)  # type: ignore[arg-type]
        elif what == "xstate":
            offset, value = change  # type: ignore[misc]
            x = bytearray(image.xstate)
            x[offset : offset + 8] = int(value).to_bytes(8, "little")
            image.xstate = bytes(x)
        else:
            image.xstate = image.xstate[:100]
        for args in ((), ("-c",)):
            assert_refused(restore(image.encode(), tmp_path, *args), reason)


def test_bad_sigaction(tiny: ci.Image, tmp_path: Path) -> None:
    image = tiny.copy()
    image.sigactions[9]["handler"] = 0xFFFF800000000000
    assert_refused(restore(image.encode(), tmp_path), "signal handler")


def test_never_a_signal_death_on_short_reads(tiny: ci.Image) -> None:
    """Truncated in the middle of a PAGES payload, streamed through a pipe."""
    data = tiny.encode()
    cut = len(data) - 32 - 16 - 1000
    r, w = os.pipe()
    result = restore_streamed(data[:cut], r, w)
    assert_refused(result, "truncated image")


# ------------------------------------------------------------------ speed


def test_restore_time_small(
    tiny: ci.Image, host: ci.Host, payload_exe: Path, tmp_path: Path
) -> None:
    """Restoring a small program takes well under 20 ms (a generous bound for CI)."""
    for image in (tiny, ci.payload_image(host, payload_exe).image):
        data = image.encode()
        best = min(_timed_restore(data, tmp_path) for _ in range(5))
        print(f"restore of a {len(data)}-byte image: {best * 1000:.1f} ms (fork+exec included)")
        assert best < 0.2


def _timed_restore(data: bytes, tmp_path: Path) -> float:
    start = time.perf_counter()
    result = restore(data, tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode in (0, ci.TINY_STATUS), result.stderr
    return elapsed


@pytest.mark.skipif(
    os.environ.get("MOSIX_RESTORE_BENCH") != "1", reason="MOSIX_RESTORE_BENCH=1: 1 GiB image"
)
def test_restore_speed_large(host: ci.Host, build: Path, tmp_path: Path) -> None:
    """A 1 GiB area restored vs the same file read (cat: into one reused buffer) and read
    into fresh memory (as any restore must: the kernel allocates and zeroes 1 GiB)."""
    ci.use_c_hash(build)
    image = ci.tiny_image(host)
    size, big = 1 << 30, 0x100000000
    block = os.urandom(F.MAX_PAGES_PER_RECORD * ci.PAGE)
    pages = [(big + at, block[: min(len(block), size - at)]) for at in range(0, size, len(block))]
    image.areas.append(ci.Area(big, big + size, ci.PROT_R | ci.PROT_W, 0, b"", pages))
    image.areas = ci.sorted_areas(image.areas)
    path = tmp_path / "big.img"
    with path.open("wb") as f:
        for part in image.parts():
            f.write(part)
    fd = os.open(path, os.O_RDONLY)

    def timed(argv: list[str]) -> float:
        os.lseek(fd, 0, os.SEEK_SET)
        start = time.perf_counter()
        result = subprocess.run(argv, pass_fds=(fd,), capture_output=True, timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
        assert result.returncode in (0, ci.TINY_STATUS), result.stderr
        return elapsed

    fresh = build_c(ci.CPROGS / "restore_readbench.c", build / "read_fresh", "-O2")
    runs = {
        "restore": [str(ci.RESTORER), str(fd)],
        "check": [str(ci.RESTORER), "-c", str(fd)],
        "cat to /dev/null": ["sh", "-c", f"exec cat <&{fd} >/dev/null"],
        "read into fresh memory": [str(fresh), str(fd)],
    }
    best = {name: min(timed(argv) for _ in range(5)) for name, argv in runs.items()}
    os.close(fd)
    for name, seconds in best.items():
        print(f"1 GiB image, {name}: {seconds * 1000:.0f} ms")
    assert best["restore"] <= 1.2 * best["read into fresh memory"]


# ------------------------------------------------------------------ real captured processes

CAPTURER = ci.NATIVE_DIR / "mosix-ckpt"
COUNTER_C = ci.CPROGS / "e2e_counter.c"
COUNTER_PY = ci.CPROGS / "e2e_counter.py"
LINES, PAUSE_AT = 3000, 1200
IMAGE_FD = 100
O_CREAT_TRUNC_EXCL = os.O_CREAT | os.O_TRUNC | os.O_EXCL


@pytest.fixture(scope="module")
def capturer() -> Path:
    probe = subprocess.run([str(CAPTURER)], capture_output=True, text=True, timeout=TIMEOUT)
    if probe.returncode == 1 and probe.stderr == "":
        pytest.skip("the capturer (csrc/ckpt/mosix_ckpt.c) is still a stub")
    return CAPTURER


@pytest.fixture(scope="module")
def counters(build: Path) -> dict[str, list[str]]:
    cflags = ("-O2", "-Wall", "-Wextra", "-Werror")
    dynamic = build_c(COUNTER_C, build / "counter", *cflags)
    static = build_c(COUNTER_C, build / "counter-static", *cflags, static=True)
    return {
        "dynamic": [str(dynamic)],
        "static": [str(static)],
        "python": ["python3", "-P", str(COUNTER_PY)],
    }


def uninterrupted(argv: list[str], out: Path) -> tuple[str, bytes]:
    result = subprocess.run(
        [*argv, str(out), str(LINES), str(PAUSE_AT)],
        input="x",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 3, result.stderr
    return result.stdout, out.read_bytes()


# Run in a fresh interpreter that then becomes the restorer: the process's regular
# files at their descriptors with their flags and offsets (mosrun -R's job), the
# image at IMAGE_FD.
REOPEN = """
import os, sys
image, fd_image, files, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
for entry in filter(None, files.split(";")):
    fd, flags, offset, path = entry.split(",", 3)
    got = os.open(path, int(flags))
    os.lseek(got, int(offset), os.SEEK_SET)
    if got == int(fd):
        os.set_inheritable(got, True)
    else:
        os.dup2(got, int(fd))
        os.close(got)
got = os.open(image, os.O_RDONLY)
os.dup2(got, fd_image)
os.close(got)
os.execv(argv[0], argv)
"""


def reopening_argv(entries: list[ci.FileEntry], image: Path, argv: list[str]) -> list[str]:
    files = ";".join(
        f"{e.fd},{e.flags & ~O_CREAT_TRUNC_EXCL},{e.offset},{e.path}"
        for e in entries
        if e.kind == F.FileKind.REGULAR
    )
    return [sys.executable, "-c", REOPEN, str(image), str(IMAGE_FD), files, *argv]


def capture(proc: subprocess.Popen[str], capturer: Path, image: Path) -> None:
    assert proc.stdout is not None and proc.stdout.readline() == "paused\n"
    result = subprocess.run(
        [str(capturer), "-o", str(image), str(proc.pid)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    proc.kill()
    proc.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("kind", ["dynamic", "static", "python"])
@pytest.mark.parametrize("discipline", [None, "u"])
def test_captured_process_continues(
    capturer: Path,
    counters: dict[str, list[str]],
    tmp_path: Path,
    kind: str,
    discipline: str | None,
) -> None:
    """Capture at the pause, kill, restore: the output is byte-identical to a run
    that was never interrupted."""
    argv = counters[kind]
    ref_stdout, ref_out = uninterrupted(argv, tmp_path / "reference")
    out, image = tmp_path / "out", tmp_path / "image"
    start = argv
    if discipline is not None:
        start = [str(ci.LAUNCHER), "-m", discipline, "-p", "mosrun", "-s", str(ci.SHIM), "--"]
        start += [argv[0], *argv]
    proc = subprocess.Popen(
        [*start, str(out), str(LINES), str(PAUSE_AT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    capture(proc, capturer, image)
    entries = ci.file_entries(image.read_bytes())
    restored = subprocess.run(
        reopening_argv(entries, image, restorer_argv(IMAGE_FD, (), discipline)),
        input="x",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (restored.returncode, restored.stderr) == (3, ""), restored.stderr
    assert "paused\n" + restored.stdout == ref_stdout
    assert out.read_bytes() == ref_out


def wait_blocked(pid: int, comm: str) -> None:
    """Until ``pid`` is the restored program (its name) and sleeps (in read(0))."""

    def blocked() -> bool:
        stat = Path(f"/proc/{pid}/stat").read_text()
        name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        return name == comm and state == "S"

    wait_until(blocked, TIMEOUT, what=f"process {pid} to be {comm} blocked in read(0)")


@pytest.mark.parametrize("kind", ["dynamic", "python"])
def test_restored_process_is_captured_and_restored_again(
    capturer: Path, counters: dict[str, list[str]], tmp_path: Path, kind: str
) -> None:
    """A restored process (vdso moved, the trampoline left over, the restorer as its
    exe) checkpoints and restores like any other."""
    argv = counters[kind]
    ref_stdout, ref_out = uninterrupted(argv, tmp_path / "reference")
    out, first, second = tmp_path / "out", tmp_path / "first", tmp_path / "second"
    proc = subprocess.Popen(
        [*argv, str(out), str(LINES), str(PAUSE_AT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    capture(proc, capturer, first)
    entries = ci.file_entries(first.read_bytes())
    restored = subprocess.Popen(
        reopening_argv(entries, first, restorer_argv(IMAGE_FD, (), None)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    comm = F.PROCESS.unpack(ci.parse_records(first.read_bytes())[0][1])["comm"]
    assert isinstance(comm, bytes)
    wait_blocked(restored.pid, comm.rstrip(b"\0").decode())
    result = subprocess.run(
        [str(capturer), "-o", str(second), str(restored.pid)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    restored.kill()
    restored.wait(timeout=TIMEOUT)
    maps = [F.AREA.unpack(p) for k, p in ci.parse_records(second.read_bytes()) if k == F.Kind.AREA]
    assert not [a for a in maps if F.TRAMPOLINE <= int(a["start"]) < F.RESTORER_BASE]  # type: ignore[call-overload]
    entries = ci.file_entries(second.read_bytes())
    again = subprocess.run(
        reopening_argv(entries, second, restorer_argv(IMAGE_FD, (), None)),
        input="x",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (again.returncode, again.stderr) == (3, ""), again.stderr
    assert "paused\n" + again.stdout == ref_stdout
    assert out.read_bytes() == ref_out
