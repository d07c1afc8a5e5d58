"""The checkpointer (csrc/ckpt/mosix_ckpt.c, mosix/_native/mosix-ckpt) on real processes.

The programs are tests/cprogs/ckpt_target.c, built dynamic and static.  Each
prints "ready PID ..." when it is set up; the test captures it then, reads the
image back with a reader written here from mosix.ckpt.format (every checksum,
the order of records, the END counts), compares it with what the process
has, and checks that the process runs on unharmed: its output continues,
blocked calls complete, no copy is left behind as a zombie.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import resource
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.cbuild import build_c
from support.waiting import wait_until

from mosix.ckpt import format as fmt
from mosix.native import NATIVE_DIR
from mosix.native.checksum import mxh64

REPO = Path(__file__).resolve().parents[1]
NATIVE = NATIVE_DIR  # the installed package's (pip install .), as CI runs it
CKPT = NATIVE / "mosix-ckpt"
RESTORE = NATIVE / "mosix-restore"
SOURCE = REPO / "tests" / "cprogs" / "ckpt_target.c"
TIMEOUT = 60
KINDS = ("dynamic", "static")

O_ACCMODE, O_WRONLY, O_APPEND, O_LARGEFILE = 0o3, 0o1, 0o2000, 0o100000
SA_RESTART, SA_RESTORER = 0x10000000, 0x04000000
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
NR_READ, NR_NANOSLEEP, NR_CLOCK_NANOSLEEP = 0, 35, 230
PAGE = fmt.PAGE_SIZE


def pattern(i: int) -> int:
    return (i * 0x9E3779B97F4A7C15 + 1) & ((1 << 64) - 1)


# ------------------------------------------------------------------ programs


@pytest.fixture(scope="module")
def progs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not CKPT.exists():
        pytest.fail(f"{CKPT} is missing: pip install .")
    out = tmp_path_factory.mktemp("ckpt_progs")
    built = {}
    for kind in KINDS:
        exe = out / f"ckpt_target-{kind}"
        flags = ("-O2", "-Wall", "-Wextra", "-Werror", "-pthread")
        build_c(SOURCE, exe, *flags, static=kind == "static")
        os.chmod(out, 0o755)
        built[kind] = exe
    return built


@dataclass
class Target:
    proc: subprocess.Popen[bytes]
    pid: int
    extra: list[str]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def state(self) -> str:
        text = Path(f"/proc/{self.pid}/stat").read_text()
        return text[text.rindex(")") + 2]

    def children(self) -> list[int]:
        out: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
        return out

    def line(self, timeout: float = 20.0) -> str:
        return read_line(self.proc, timeout)


def read_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    """One line of the program's output, without relying on its timing."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from the program (so far {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"the program ended (output {data!r})")
        data += chunk
    return data.decode()


@contextlib.contextmanager
def start(
    argv: list[str], cwd: Path | None = None, stdin: int = subprocess.DEVNULL, **kw: object
) -> Iterator[Target]:
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, cwd=cwd, **kw)  # type: ignore[call-overload]
    try:
        first = read_line(proc)
        words = first.split()
        assert words[:1] == ["ready"], first
        yield Target(proc, int(words[1]), words[2:])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=TIMEOUT)
        for f in (proc.stdin, proc.stdout):
            if f:
                f.close()


def capture(pid: int, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CKPT), *args, str(pid)],
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )


def captured(pid: int, path: Path, *args: str, env: dict[str, str] | None = None) -> Image:
    r = capture(pid, "-o", str(path), *args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b"" or b"pause_us=" in r.stderr, r.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.tmp.")]
    return read_image(path.read_bytes())


# ------------------------------------------------------------------ the image


@dataclass
class Area:
    rec: dict[str, object]
    name: str
    pages: dict[int, bytes] = field(default_factory=dict)  # address -> page

    @property
    def start(self) -> int:
        return int(self.rec["start"])  # type: ignore[call-overload]

    @property
    def end(self) -> int:
        return int(self.rec["end"])  # type: ignore[call-overload]

    def has(self, flag: fmt.AreaFlag) -> bool:
        return bool(int(self.rec["flags"]) & flag)  # type: ignore[call-overload]


@dataclass
class Image:
    header: dict[str, object]
    kinds: list[fmt.Kind]
    process: dict[str, object]
    options: dict[str, str]
    cwd: str
    files: dict[int, tuple[dict[str, object], str]]
    filedata: dict[int, bytes]
    regs: dict[str, int]
    xstate: bytes
    actions: list[dict[str, object]]
    areas: list[Area]
    end: dict[str, object]
    threads: list[dict[str, object]] = field(default_factory=list)  # THREAD records
    signals: list[dict[str, object]] = field(default_factory=list)  # SIGNAL records

    def area_of(self, addr: int) -> Area:
        for a in self.areas:
            if a.start <= addr < a.end:
                return a
        raise AssertionError(f"no area holds {addr:#x}")

    def read(self, addr: int, n: int) -> bytes:
        """Bytes of the image's memory (pages not stored read as zeros)."""
        out = b""
        while len(out) < n:
            page = addr & ~(PAGE - 1)
            data = self.area_of(addr).pages.get(page, bytes(PAGE))
            take = min(n - len(out), page + PAGE - addr)
            out += data[addr - page : addr - page + take]
            addr += take
        return out


def read_image(data: bytes, check_pages: bool = True) -> Image:
    """Parse and check an image the way a reader must: nothing is trusted."""
    head = fmt.FILE_HEADER.unpack(data[:64])
    assert head["magic"] == fmt.MAGIC and head["version"] == fmt.VERSION
    assert head["arch"] == fmt.ARCH_X86_64 and head["page_size"] == PAGE
    assert head["header_size"] == 64 and mxh64(data[:56]) == head["head_hash"]
    at, seq, records = 64, 0, []
    while at < len(data):
        h = fmt.RECORD_HEADER.unpack(data[at : at + 32])
        assert mxh64(data[at : at + 24]) == h["head_hash"], f"record {seq} header"
        assert h["seq"] == seq and h["flags"] == 0
        length = int(h["length"])  # type: ignore[call-overload]
        assert length <= fmt.MAX_RECORD_BYTES
        payload = data[at + 32 : at + 32 + length]
        assert len(payload) == length, "truncated"
        kind = fmt.Kind(h["kind"])
        if check_pages or kind != fmt.Kind.PAGES:
            assert mxh64(payload) == h["payload_hash"], f"record {seq} payload"
        records.append((kind, payload))
        at += 32 + length
        seq += 1
    kinds = [k for k, _ in records]
    check_order(kinds)
    return build(head, records)


def check_order(kinds: list[fmt.Kind]) -> None:
    rank = {k: i for i, k in enumerate(fmt.ORDER)}
    rank[fmt.Kind.PAGES] = rank[fmt.Kind.AREA]
    assert [rank[k] for k in kinds] == sorted(rank[k] for k in kinds), kinds[:20]
    for k in fmt.ORDER:
        if k not in fmt.REPEATED:
            assert kinds.count(k) == 1, k
    assert kinds[-1] == fmt.Kind.END
    first_area = kinds.index(fmt.Kind.AREA)
    assert fmt.Kind.PAGES not in kinds[:first_area]


def build(head: dict[str, object], records: list[tuple[fmt.Kind, bytes]]) -> Image:
    img = Image(head, [k for k, _ in records], {}, {}, "", {}, {}, {}, b"", [], [], {})
    mapfiles: list[tuple[dict[str, object], str]] = []
    stored = 0
    for kind, p in records:
        if kind == fmt.Kind.PROCESS:
            assert len(p) == fmt.PROCESS.size
            img.process = fmt.PROCESS.unpack(p)
        elif kind == fmt.Kind.OPTIONS:
            lines = p.decode().splitlines()
            img.options = dict(line.split("=", 1) for line in lines)
            assert all(k in fmt.OPTION_KEYS for k in img.options)
        elif kind == fmt.Kind.CWD:
            img.cwd = p.decode()
        elif kind == fmt.Kind.FILE:
            rec = fmt.FILE.unpack(p)
            assert len(p) == fmt.FILE.size + rec["path_len"]
            img.files[int(rec["fd"])] = (rec, p[fmt.FILE.size :].decode())  # type: ignore[call-overload]
        elif kind == fmt.Kind.FILEDATA:
            rec = fmt.FILEDATA.unpack(p)
            fd = int(rec["fd"])  # type: ignore[call-overload]
            assert img.files[fd][0]["kind"] == fmt.FileKind.UNLINKED
            got = img.filedata.setdefault(fd, b"")
            assert rec["offset"] == len(got) and len(p) - 16 <= 4 << 20
            img.filedata[fd] = got + p[16:]
        elif kind == fmt.Kind.REGS:
            img.regs = fmt.REGS.unpack(p)  # type: ignore[assignment]
        elif kind == fmt.Kind.XSTATE:
            img.xstate = p
        elif kind == fmt.Kind.SIGACTIONS:
            assert len(p) == 64 * fmt.SIGACTION.size
            img.actions = [fmt.SIGACTION.unpack(p[i * 32 : i * 32 + 32]) for i in range(64)]
        elif kind == fmt.Kind.THREAD:
            assert len(p) == fmt.THREAD.size + int(img.process["xsave_size"])  # type: ignore[call-overload]
            img.threads.append(fmt.THREAD.unpack(p))
        elif kind == fmt.Kind.SIGNAL:
            assert len(p) == fmt.SIGNAL.size
            img.signals.append(fmt.SIGNAL.unpack(p))
        elif kind == fmt.Kind.MAPFILE:
            rec = fmt.MAPFILE.unpack(p)
            assert len(p) == fmt.MAPFILE.size + rec["path_len"]
            mapfiles.append((rec, p[fmt.MAPFILE.size :].decode()))
        elif kind == fmt.Kind.AREA:
            rec = fmt.AREA.unpack(p)
            assert len(p) == fmt.AREA.size + rec["name_len"]
            area = Area(rec, p[fmt.AREA.size :].decode(errors="replace"))
            if img.areas:
                assert img.areas[-1].end <= area.start, "areas in address order"
            assert fmt.USER_LOW <= area.start < area.end <= fmt.USER_HIGH
            img.areas.append(area)
        elif kind == fmt.Kind.PAGES:
            addr, npages = struct.unpack("<QQ", p[:16])
            area = img.areas[-1]
            assert area.start <= addr and addr + npages * PAGE <= area.end
            assert len(p) == 16 + npages * PAGE and 0 < npages <= fmt.MAX_PAGES_PER_RECORD
            for i in range(npages):
                page = p[16 + i * PAGE : 16 + (i + 1) * PAGE]
                if not area.has(fmt.AreaFlag.REFERENCE):
                    assert page != bytes(PAGE), "zero pages are not stored"
                assert addr + i * PAGE not in area.pages
                area.pages[addr + i * PAGE] = page
            stored += npages
        elif kind == fmt.Kind.END:
            img.end = fmt.END.unpack(p)
    assert img.end["records"] == len(records) - 1
    assert img.end["areas"] == len(img.areas)
    assert img.end["pages"] == stored
    assert img.process["xsave_size"] == len(img.xstate)
    fill_referenced(img, mapfiles)
    return img


def fill_referenced(img: Image, mapfiles: list[tuple[dict[str, object], str]]) -> None:
    """The pages of REFERENCE areas not stored are their file's: read them from it
    (checking the MAPFILE's identity and hash), so that the image's memory reads as
    if every page were stored (zero pages left out, as a full image does)."""
    referenced: dict[int, bytearray] = {i: bytearray() for i in range(len(mapfiles))}
    for area in img.areas:
        if not area.has(fmt.AreaFlag.REFERENCE):
            continue
        i = int(area.rec["mapfile"])  # type: ignore[call-overload]
        rec, path = mapfiles[i]
        assert area.has(fmt.AreaFlag.FILE) and area.name == path
        st = os.stat(path)
        assert (st.st_dev, st.st_ino, st.st_size) == (rec["dev"], rec["ino"], rec["size"])
        assert st.st_mtime_ns == rec["mtime_ns"]
        data = Path(path).read_bytes()
        pgoff = int(area.rec["pgoff"])  # type: ignore[call-overload]
        have = -(-len(data) // PAGE) * PAGE
        end = min(area.end, area.start + max(0, have - pgoff))
        for addr in range(area.start, end, PAGE):
            if addr in area.pages:
                continue
            at = pgoff + addr - area.start
            page = data[at : at + PAGE].ljust(PAGE, b"\0")
            referenced[i] += page
            area.pages[addr] = page
        for addr in [a for a, page in area.pages.items() if page == bytes(PAGE)]:
            del area.pages[addr]
    for i, (rec, path) in enumerate(mapfiles):
        assert mxh64(bytes(referenced[i])) == rec["hash"], path


def restorer_accepts(path: Path) -> None:
    """The restorer's own check (mosix-restore -c) reads the whole image."""
    if not RESTORE.exists():
        return
    with open(path, "rb") as f:
        r = subprocess.run(
            [str(RESTORE), "-c", str(f.fileno())],
            pass_fds=(f.fileno(),),
            capture_output=True,
            timeout=TIMEOUT,
        )
    assert r.returncode == 0, r.stderr


def maps_of(pid: int) -> list[tuple[int, int, str, str]]:
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(None, 5)
        s, e = (int(x, 16) for x in parts[0].split("-"))
        out.append((s, e, parts[1], parts[5] if len(parts) > 5 else ""))
    return out


def lines_of(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


# ------------------------------------------------------------------ capture and run on


@pytest.mark.parametrize("kind", KINDS)
def test_counter_captured_and_runs_on(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    out = tmp_path / "count.txt"
    with start([str(progs[kind]), "counter", str(out), "8"]) as t:
        fd, addr = int(t.extra[0]), int(t.extra[1], 16)
        wait_until(lambda: len(lines_of(out)) > 10, what="the counter to start")
        maps_before = maps_of(t.pid)
        img = captured(t.pid, tmp_path / "ckpt.1")
        seen = len(lines_of(out))
        wait_until(lambda: len(lines_of(out)) > seen + 20, what="the counter to go on")
        assert t.alive() and t.state() in "RS"
        assert t.children() == []

    # identity
    assert img.header["pid"] == t.pid == img.process["pid"]
    assert img.process["comm"].rstrip(b"\0") == progs[kind].name[:15].encode()
    assert img.process["ppid"] == os.getpid()
    assert img.process["uid"] == os.getuid()
    assert img.process["exe"].rstrip(b"\0").decode() == str(progs[kind])
    assert img.options == {"inherit": "", "argv0": str(progs[kind])}
    assert img.cwd == os.getcwd()

    # the counter's file: the offset at the frozen point ends a whole line
    rec, path = img.files[fd]
    assert path == str(out) and rec["kind"] == fmt.FileKind.REGULAR
    assert int(rec["flags"]) & O_ACCMODE == O_WRONLY and rec["cloexec"] == 0
    offset = int(rec["offset"])  # type: ignore[call-overload]
    written = out.read_bytes()[:offset]
    numbers = [int(x) for x in written.split()]
    assert written.endswith(b"\n") and numbers == list(range(1, len(numbers) + 1))
    assert rec["ino"] == out.stat().st_ino and rec["dev"] == out.stat().st_dev
    assert {0, 1, 2} <= set(img.files)
    assert img.files[1][0]["kind"] == fmt.FileKind.SPECIAL  # a pipe on a standard stream

    # the areas are the process's (its stack may have grown since)
    got = [(a.start, a.end, a.name) for a in img.areas if a.name != "[stack]"]
    want = [(s, e, n.removesuffix(" (deleted)")) for s, e, _, n in maps_before]
    want = [w for w in want if w[2] not in ("[stack]", "[vsyscall]")]
    assert got == want
    assert [a.end for a in img.areas if a.name == "[stack]"] == [
        e for _, e, _, n in maps_before if n == "[stack]"
    ]
    perms = {s: p for s, _, p, _ in maps_before}
    for a in img.areas:
        if a.name != "[stack]":
            rwx = perms[a.start][:3]
            want_prot = sum(bit for c, bit in zip(rwx, (1, 2, 4), strict=True) if c != "-")
            assert a.rec["prot"] == want_prot, a.name
        assert a.has(fmt.AreaFlag.SHARED) == (perms.get(a.start, "p")[3] == "s")
        if a.has(fmt.AreaFlag.VDSO) or a.has(fmt.AreaFlag.VVAR):
            assert not a.pages

    # registers: on executable code, the stack pointer in the stack
    rip, rsp = img.regs["rip"], img.regs["rsp"]
    assert int(img.area_of(rip).rec["prot"]) & PROT_EXEC  # type: ignore[call-overload]
    assert img.area_of(rsp).has(fmt.AreaFlag.STACK)
    assert img.regs["orig_rax"] == (1 << 64) - 1
    assert img.regs["fs_base"] and img.process["tid_addr"] == img.regs["fs_base"] + 0x2D0

    # the patterned memory, word for word
    words = struct.unpack("<4096Q", img.read(addr + (1 << 20), 32768))
    assert list(words) == [pattern((1 << 17) + i) for i in range(4096)]
    assert img.read(addr, 8) == struct.pack("<Q", pattern(0))
    restorer_accepts(tmp_path / "ckpt.1")


@pytest.mark.parametrize("kind", KINDS)
def test_blocked_read_is_restarted(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    with start([str(progs[kind]), "read"], stdin=subprocess.PIPE) as t:
        wait_until(lambda: t.state() == "S", what="the read to block")
        img = captured(t.pid, tmp_path / "ckpt")
        assert t.proc.stdin is not None
        t.proc.stdin.write(b"hello\n")
        t.proc.stdin.flush()
        assert t.line() == "got hello\n"
        assert t.proc.wait(timeout=TIMEOUT) == 0
    # the image issues the read again: rax its number, rip on the syscall instruction
    assert img.regs["rax"] == NR_READ and img.regs["orig_rax"] == (1 << 64) - 1
    assert img.read(img.regs["rip"], 2) == b"\x0f\x05"
    assert img.regs["rdi"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_sleep_is_restarted(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    with start([str(progs[kind]), "sleep", "1"]) as t:
        wait_until(lambda: t.state() == "S", what="the sleep")
        img = captured(t.pid, tmp_path / "ckpt")
        line = t.line()
        assert line.startswith("slept "), line
        assert int(line.split()[1]) >= 990
    assert img.regs["rax"] in (NR_NANOSLEEP, NR_CLOCK_NANOSLEEP)
    assert img.read(img.regs["rip"], 2) == b"\x0f\x05"


@pytest.mark.parametrize("kind", KINDS)
def test_sigsuspend_keeps_its_masks(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    """The image has the program's own mask, not sigsuspend's temporary one; the
    live program gets its own back when sigsuspend returns."""
    with start([str(progs[kind]), "suspend"]) as t:
        wait_until(lambda: t.state() == "S", what="the sigsuspend")
        img = captured(t.pid, tmp_path / "ckpt")
        os.kill(t.pid, signal.SIGUSR1)
        assert t.line() == "mask 1 0\n"
    assert img.process["sigmask"] == 1 << (signal.SIGHUP - 1)
    assert img.regs["rax"] == 130  # rt_sigsuspend, issued again
    assert img.read(img.regs["rip"], 2) == b"\x0f\x05"


def test_group_stopped_process_stays_stopped(progs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "count.txt"
    with start([str(progs["dynamic"]), "counter", str(out), "1"]) as t:
        os.kill(t.pid, signal.SIGSTOP)
        wait_until(lambda: t.state() == "T", what="the stop")
        captured(t.pid, tmp_path / "ckpt")
        assert t.state() == "T"
        seen = len(lines_of(out))
        os.kill(t.pid, signal.SIGCONT)
        wait_until(lambda: len(lines_of(out)) > seen + 5, what="the counter to go on")
        assert t.children() == []


def test_wait_of_the_program_is_not_disturbed(progs: dict[str, Path], tmp_path: Path) -> None:
    with start([str(progs["dynamic"]), "child"]) as t:
        child = int(t.extra[0])
        wait_until(lambda: t.state() == "S", what="the wait")
        captured(t.pid, tmp_path / "ckpt")
        assert t.children() == [child]  # the copy is gone, reaped
        os.kill(child, signal.SIGKILL)
        assert t.line() == f"waited {child} 9\n"


@pytest.mark.parametrize("kind", KINDS)
def test_signals_during_capture_are_not_lost(
    progs: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """Real-time signals (queued, each counted) sent all through several captures:
    those that arrive while a call is injected are held back and sent again."""
    sent = 3000
    with start([str(progs[kind]), "signals"], stdin=subprocess.PIPE) as t:
        sender = subprocess.Popen(
            [sys.executable, "-c", SENDER, str(t.pid), str(sent)], stdout=subprocess.PIPE
        )
        assert read_line(sender) == "sending\n"
        for i in range(6):
            captured(t.pid, tmp_path / f"ckpt.{i}")
        assert sender.wait(timeout=TIMEOUT) == 0
        assert sender.stdout is not None
        sender.stdout.close()
        assert t.proc.stdin is not None
        t.proc.stdin.write(b"\n")
        t.proc.stdin.flush()
        assert t.line() == f"count {sent}\n"
        assert t.children() == []


SENDER = """
import os, signal, sys, time
pid, n = int(sys.argv[1]), int(sys.argv[2])
print("sending", flush=True)
for i in range(n):
    os.kill(pid, signal.SIGRTMIN + 1)
    if i % 10 == 0:
        time.sleep(0.0005)
"""


@pytest.mark.parametrize("mib", [4, 64])
def test_terminated_while_writing(progs: dict[str, Path], tmp_path: Path, mib: int) -> None:
    """SIGTERM while the image waits for a reader that does not read (with its
    chunks all full, or at the end): the copy is killed and reaped, the process
    runs on."""
    with start([str(progs["dynamic"]), "big", str(mib)]) as t:
        rd, wr = os.pipe()
        ck = subprocess.Popen(
            [str(CKPT), "-f", str(wr), str(t.pid)], pass_fds=(wr,), stderr=subprocess.PIPE
        )
        os.close(wr)
        wait_until(lambda: t.children() != [], what="the copy")
        ck.send_signal(signal.SIGTERM)
        _, err = ck.communicate(timeout=TIMEOUT)
        os.close(rd)
        assert ck.returncode == 1 and err == b"mosix-ckpt: interrupted by a signal\n"
        assert t.alive() and t.state() in "RS" and t.children() == []


VFORK_THREAD = r"""
/* A thread vforks a child that waits for a line on stdin: until then the
 * thread waits for it in a sleep no signal but SIGKILL ends, and never stops
 * for a tracer. */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *forker(void *arg)
{
    (void)arg;
    if (vfork() == 0) {
        char c;
        while (syscall(SYS_read, 0, &c, 1) == 1 && c != '\n')
            ;
        _exit(0);
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    if (pthread_create(&t, NULL, forker, NULL) != 0 || pthread_join(t, NULL) != 0)
        return 1;
    printf("done\n");
    return 0;
}
"""


def tasks_of(pid: int) -> list[Path]:
    return list(Path(f"/proc/{pid}/task").iterdir())


def states_of(pid: int) -> list[str]:
    return [(task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks_of(pid)]


def tracers_of(pid: int) -> set[int]:
    found = set()
    for task in tasks_of(pid):
        status = (task / "status").read_text()
        found.add(int(status.split("TracerPid:")[1].split()[0]))
    return found


def test_terminated_while_a_thread_does_not_stop(tmp_path: Path) -> None:
    """SIGTERM while the capture waits for a thread that does not stop (a vfork
    parent): it ends at once with one line, no image, and the process runs on
    untraced, as it was."""
    exe = build_c(VFORK_THREAD, tmp_path / "vfork_thread", "-O2", "-pthread")
    image = tmp_path / "images" / "ck"
    image.parent.mkdir()
    with start([str(exe)], stdin=subprocess.PIPE) as t:
        wait_until(lambda: "D" in states_of(t.pid), what="the thread waiting for its vfork child")
        ck = subprocess.Popen([str(CKPT), "-o", str(image), str(t.pid)], stderr=subprocess.PIPE)
        wait_until(lambda: ck.pid in tracers_of(t.pid), what="the capture tracing the threads")
        ck.send_signal(signal.SIGTERM)
        try:
            _, err = ck.communicate(timeout=10)
        finally:
            if ck.poll() is None:
                ck.kill()
                ck.wait()
        assert ck.returncode == 1 and err == b"mosix-ckpt: interrupted by a signal\n"
        assert tracers_of(t.pid) == {0}
        assert list(image.parent.iterdir()) == []
        assert t.proc.stdin is not None
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.close()
        assert t.line() == "done\n"
        assert t.proc.wait(timeout=TIMEOUT) == 0


def test_process_executes_another_program_meanwhile(progs: dict[str, Path], tmp_path: Path) -> None:
    """The copy is reaped by an injected call in whatever program the process runs
    by then: the syscall instruction is found again in the new one."""
    with start([str(progs["dynamic"]), "exec", "16"], stdin=subprocess.PIPE) as t:
        rd, wr = os.pipe()
        ck = subprocess.Popen([str(CKPT), "-f", str(wr), str(t.pid)], pass_fds=(wr,))
        os.close(wr)
        wait_until(lambda: t.children() != [], what="the copy")
        assert t.proc.stdin is not None
        t.proc.stdin.write(b"go\n")
        t.proc.stdin.flush()
        assert t.line() == f"ready {t.pid} read\n"  # the new program
        with os.fdopen(rd, "rb") as f:
            data = f.read()
        assert ck.wait(timeout=TIMEOUT) == 0
        assert read_image(data, check_pages=False).end["pages"] >= 16 * 256
        assert t.children() == []
        t.proc.stdin.write(b"still here\n")
        t.proc.stdin.flush()
        assert t.line() == "got still here\n"


def test_copy_killed_during_the_capture(progs: dict[str, Path], tmp_path: Path) -> None:
    """Pages that cannot be read are left out only while the copy lives: a copy
    that was killed fails the capture instead of giving an image without memory."""
    with start([str(progs["dynamic"]), "big", "64"]) as t:
        rd, wr = os.pipe()
        ck = subprocess.Popen(
            [str(CKPT), "-f", str(wr), str(t.pid)], pass_fds=(wr,), stderr=subprocess.PIPE
        )
        os.close(wr)
        wait_until(lambda: t.children() != [], what="the copy")
        os.kill(t.children()[0], signal.SIGKILL)
        with os.fdopen(rd, "rb") as f:
            f.read()
        err = ck.communicate(timeout=TIMEOUT)[1]
        assert ck.returncode == 1 and err.startswith(b"mosix-ckpt: ") and err.count(b"\n") == 1
        assert t.alive() and t.children() == []


def test_busy_process_writing_its_memory(progs: dict[str, Path], tmp_path: Path) -> None:
    with start([str(progs["dynamic"]), "busy", "32"]) as t:
        for i in range(3):
            img = captured(t.pid, tmp_path / f"ckpt.{i}")
            assert img.end["pages"] >= 32 * 256
        assert t.alive() and t.children() == []


# ------------------------------------------------------------------ files


@pytest.mark.parametrize("kind", KINDS)
def test_files(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    (tmp_path / "data").write_text("0123456789")
    with start([str(progs[kind]), "files", str(tmp_path)]) as t:
        a, b, d, n, e = (int(x) for x in t.extra)
        img = captured(t.pid, tmp_path / "ckpt")
    files = img.files
    assert sorted(files) == [0, 1, 2, a, b, d, n, e]
    rec, path = files[a]
    assert (rec["kind"], path, rec["offset"], rec["size"]) == (
        fmt.FileKind.REGULAR,
        str(tmp_path / "data"),
        3,
        10,
    )
    assert int(rec["flags"]) & ~O_LARGEFILE == os.O_RDONLY and rec["cloexec"] == 0
    rec, path = files[b]
    assert (rec["kind"], path) == (fmt.FileKind.REGULAR, str(tmp_path / "log"))
    assert int(rec["flags"]) & ~O_LARGEFILE == O_WRONLY | O_APPEND and rec["cloexec"] == 1
    assert stat.S_ISREG(int(rec["mode"]))  # type: ignore[call-overload]
    rec, path = files[d]
    assert (rec["kind"], path) == (fmt.FileKind.DIRECTORY, str(tmp_path))
    assert files[n][0]["kind"] == fmt.FileKind.SPECIAL and files[n][1] == "/dev/null"
    assert files[e][0]["kind"] == fmt.FileKind.OTHER and "eventfd" in files[e][1]


APPENDED_MAX = 256 << 20  # ckpt_target.c: the appender's last byte


@pytest.mark.parametrize("kind", KINDS)
def test_appended_file_size_is_the_frozen_points(
    progs: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """A file the process appends to is recorded with its size at the frozen
    point, where its offset is read, not with the size it has grown to when the
    checkpointer gets to it: recovery cuts the file back to that size and the
    process writes again what it wrote after it (once more when the size is
    later's: tests/test_exact_recovery.py's rare line twice).  The appender
    writes all the time, so the file grows while the image is made."""
    with start([str(progs[kind]), "appender", str(tmp_path)]) as t:
        (fd,) = (int(x) for x in t.extra)
        for i in range(3):
            img = captured(t.pid, tmp_path / f"ckpt.{i}")
            rec, path = img.files[fd]
            assert path == str(tmp_path / "log")
            assert int(rec["flags"]) & O_APPEND
            # its only writer, stopped: the file ends where its offset is
            assert rec["size"] == rec["offset"], (i, rec["offset"], rec["size"])
        assert int(rec["offset"]) < APPENDED_MAX, "it stopped appending before the capture"
        assert t.alive() and t.children() == []


@pytest.mark.parametrize("kind", KINDS)
def test_unlinked_files(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    with start([str(progs[kind]), "unlinked", str(tmp_path)]) as t:
        gone, wonly = (int(x) for x in t.extra)
        img = captured(t.pid, tmp_path / "ckpt")
    rec, path = img.files[gone]
    assert (rec["kind"], path, rec["offset"], rec["size"]) == (
        fmt.FileKind.UNLINKED,
        str(tmp_path / "gone"),
        7,
        15000,
    )
    assert img.filedata[gone] == b"hello unlinked\n" * 1000
    # open for writing only: reopened by its old path (the manual's exception)
    rec, path = img.files[wonly]
    assert (rec["kind"], path, rec["offset"]) == (fmt.FileKind.REGULAR, str(tmp_path / "wonly"), 3)
    assert wonly not in img.filedata


# ------------------------------------------------------------------ memory and state


@pytest.mark.parametrize("kind", KINDS)
def test_memory_kinds(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    data = tmp_path / "one-page"
    data.write_bytes(b"F" * 100)
    with start([str(progs[kind]), "memory", str(data)]) as t:
        none, past, ro = (int(x, 16) for x in t.extra)
        wait_until(lambda: t.state() == "S", what="the pause")  # its memory stays as it is
        img = captured(t.pid, tmp_path / "ckpt")
        # the copy was made readable, the process was not
        perms = {s: p for s, _, p, _ in maps_of(t.pid)}
        assert perms[none] == "---p"
        img2 = captured(t.pid, tmp_path / "ckpt2", env={"MOSIX_CKPT_NO_PAGEMAP_SCAN": "1"})
        assert t.alive()
    a = img.area_of(none)
    assert a.rec["prot"] == 0 and a.start == none and a.end == none + 4 * PAGE
    assert a.pages == {none + PAGE: b"\x5a" * PAGE}  # the one page written before PROT_NONE
    a = img.area_of(past)
    assert a.has(fmt.AreaFlag.FILE) and not a.has(fmt.AreaFlag.SHARED) and a.name == str(data)
    assert a.pages == {past: b"F" * 100 + bytes(PAGE - 100)}  # nothing past the file's end
    a = img.area_of(ro)
    assert a.has(fmt.AreaFlag.FILE) and a.has(fmt.AreaFlag.SHARED) and a.rec["prot"] == PROT_READ
    assert a.pages == {ro: b"F" * 100 + bytes(PAGE - 100)}
    # /proc/PID/pagemap read instead of PAGEMAP_SCAN: the same pages (but for
    # the CPU number the kernel keeps in the rseq area, which changes)
    rseq = int(img.process["rseq_addr"])  # type: ignore[call-overload]
    for a in (img, img2):
        if rseq:
            a.area_of(rseq).pages.pop(rseq & ~(PAGE - 1), None)
    for a1, a2 in zip(img.areas, img2.areas, strict=True):
        assert (a1.start, a1.end, a1.name) == (a2.start, a2.end, a2.name)
        if a1.name != "[stack]":
            assert a1.pages == a2.pages, a1.name


@pytest.mark.parametrize("kind", KINDS)
def test_signal_and_kernel_state(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    with start([str(progs[kind]), "state"]) as t:
        handler, altstack, brk = (int(x, 16) for x in t.extra)
        img = captured(t.pid, tmp_path / "ckpt")
        limits = {
            r: resource.prlimit(t.pid, r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_STACK)
        }
        status = Path(f"/proc/{t.pid}/status").read_text()
        auxv = Path(f"/proc/{t.pid}/auxv").read_bytes()
    p, acts = img.process, img.actions
    usr1 = acts[signal.SIGUSR1 - 1]
    assert usr1["handler"] == handler
    assert int(usr1["flags"]) & SA_RESTART and int(usr1["flags"]) & SA_RESTORER  # type: ignore[call-overload]
    assert usr1["mask"] == 1 << (signal.SIGTERM - 1)
    assert acts[signal.SIGUSR2 - 1]["handler"] == 1  # SIG_IGN
    assert acts[signal.SIGKILL - 1] == {"handler": 0, "flags": 0, "restorer": 0, "mask": 0}
    assert int(p["sigmask"]) & (1 << (signal.SIGHUP - 1))  # type: ignore[call-overload]
    assert int(p["sigmask"]) & (1 << (signal.SIGRTMIN + 3 - 1))  # type: ignore[call-overload]
    assert (p["altstack_sp"], p["altstack_size"], p["altstack_flags"]) == (altstack, 65536, 0)
    interval_s, interval_us, value_s, _ = p["itimers"][:4]  # type: ignore[index]
    assert (interval_s, interval_us) == (7, 0) and 900 < value_s <= 1000
    assert p["itimers"][4:] == (0,) * 8  # type: ignore[index]
    assert p["brk"] == brk and p["start_brk"] <= brk
    umask = int(re.search(r"Umask:\s+(\d+)", status).group(1), 8)  # type: ignore[union-attr]
    assert p["umask"] == umask
    rl = p["rlimits"]
    for r, (soft, hard) in limits.items():
        inf = (1 << 64) - 1
        assert rl[2 * r : 2 * r + 2] == (  # type: ignore[index]
            inf if soft == resource.RLIM_INFINITY else soft,
            inf if hard == resource.RLIM_INFINITY else hard,
        )
    words = p["auxv_words"]
    assert p["auxv"][:words] == struct.unpack(f"<{words}Q", auxv[: 8 * words])  # type: ignore[index]
    assert p["auxv"][words - 2 : words] == (0, 0)  # type: ignore[index]
    assert int(p["xfeatures"]) & 3 == 3 and int(p["xsave_size"]) >= 576  # type: ignore[call-overload]
    assert p["rseq_len"] in (0, 32) and (p["rseq_len"] == 0 or p["rseq_sig"] == 0x53053053)
    assert p["robust_list"] and p["robust_len"] == 24
    assert p["tid_addr"] == img.regs["fs_base"] + 0x2D0
    assert p["start_code"] < p["end_code"] and p["arg_start"] < p["arg_end"]
    vdso = next(a for a in img.areas if a.has(fmt.AreaFlag.VDSO))
    assert tuple(p["vdso"]) == (vdso.start, vdso.end)  # type: ignore[arg-type]
    assert p["base_mode"] == 0 and p["shim_kind"] == fmt.ShimKind.NONE


# ------------------------------------------------------------------ refusals


def refusal_line(pid: int, reason: str) -> bytes:
    return f"mosrun: checkpoint of process {pid} failed: {reason}\n".encode()


REFUSALS = {
    "pipe": "it has an open pipe (descriptor 5)",
    "socket": "it has an open socket (descriptor 6)",
}


@pytest.mark.parametrize("what", sorted(REFUSALS))
@pytest.mark.parametrize("kind", KINDS)
def test_refused(progs: dict[str, Path], tmp_path: Path, what: str, kind: str) -> None:
    with start([str(progs[kind]), what]) as t:
        path = tmp_path / "ckpt.3"
        r = capture(t.pid, "-o", str(path))
        # the reason on stderr too: the agent never reads the file back
        assert r.returncode == 3 and r.stderr == refusal_line(t.pid, REFUSALS[what])
        assert path.read_bytes() == refusal_line(t.pid, REFUSALS[what])
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.3"]
        # to a descriptor: the same line
        rd, wr = os.pipe()
        r = subprocess.run([str(CKPT), "-f", str(wr), str(t.pid)], pass_fds=(wr,), timeout=TIMEOUT)
        os.close(wr)
        with os.fdopen(rd, "rb") as f:
            assert f.read() == refusal_line(t.pid, REFUSALS[what])
        assert r.returncode == 3
        assert t.alive() and t.state() in "RS" and t.children() == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_thread_is_captured(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    """Its own THREAD record (registers, mask, glibc's tid address); the process runs on."""
    with start([str(progs[kind]), "threads"]) as t:
        tids = sorted(int(n) for n in os.listdir(f"/proc/{t.pid}/task"))
        img = captured(t.pid, tmp_path / "ckpt.3")
        assert img.process["threads"] == 2 and len(img.threads) == 1
        (th,) = img.threads
        assert th["tid"] == next(n for n in tids if n != t.pid)
        regs = dict(zip(fmt.REG_NAMES, th["regs"], strict=True))  # type: ignore[call-overload]
        offset = img.process["tcb_tid_offset"]
        assert isinstance(offset, int) and offset > 0
        assert th["tid_addr"] == regs["fs_base"] + offset
        assert th["clear_tid"] == th["tid_addr"]  # as glibc's pthread_create sets it
        assert img.read(th["tid_addr"], 4) == struct.pack("<I", th["tid"])  # type: ignore[arg-type]
        assert img.process["tid_addr"] == img.regs["fs_base"] + offset
        assert t.alive() and t.state() in "RS" and t.children() == []
        assert len(os.listdir(f"/proc/{t.pid}/task")) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_threaded_migration_not_confirmed_lets_every_thread_go_on(
    progs: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    """A migration's capture streams every thread; without the agent's "go" (its
    stdin ends) the process goes on here, each thread where it was (status 4)."""
    with start([str(progs[kind]), "threads"]) as t:
        r = subprocess.run(
            [str(CKPT), "-o", str(tmp_path / "ckpt.3"), "-a", "migrate", str(t.pid)],
            input=b"",
            capture_output=True,
            timeout=TIMEOUT,
        )
        assert (r.returncode, r.stderr) == (4, b"")
        assert r.stdout == b"captured\n"
        assert read_image((tmp_path / "ckpt.3").read_bytes()).process["threads"] == 2
        tasks = sorted(os.listdir(f"/proc/{t.pid}/task"))
        assert len(tasks) == 2
        for tid in tasks:  # none left stopped, none with the injections' registers
            stat_text = Path(f"/proc/{t.pid}/task/{tid}/stat").read_text()
            assert stat_text.rsplit(")", 1)[1].split()[0] in "RS"
        assert t.alive() and t.children() == []
        os.kill(t.pid, signal.SIGTERM)
        assert t.proc.wait(timeout=TIMEOUT) == -signal.SIGTERM


def test_set_id_refused(progs: dict[str, Path], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a set-id process")
    with start([str(progs["dynamic"]), "setid"]) as t:
        r = capture(t.pid, "-o", str(tmp_path / "ckpt"))
        # denied before anything is created (status 5, one line)
        assert r.returncode == 5
        assert (
            r.stderr
            == (
                f"mosix-ckpt: process {t.pid} may not be checkpointed: "
                "it runs with set-user-ID or set-group-ID privileges\n"
            ).encode()
        )
        assert list(tmp_path.iterdir()) == []
        assert t.alive()


@pytest.mark.parametrize("how", ["dontfork", "wipeonfork"])
def test_memory_a_fork_leaves_out_refused(progs: dict[str, Path], tmp_path: Path, how: str) -> None:
    with start([str(progs["dynamic"]), "nofork", how]) as t:
        addr = int(t.extra[0], 16)
        r = capture(t.pid, "-o", str(tmp_path / "ckpt"))
        assert r.returncode == 3
        reason = (
            "it has memory a fork does not copy (MADV_DONTFORK or MADV_WIPEONFORK, "
            f"{addr:x}-{addr + 4 * PAGE:x})"
        )
        assert (tmp_path / "ckpt").read_bytes() == refusal_line(t.pid, reason)
        assert t.alive()


def test_writable_shared_mapping_refused(progs: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "shared"
    data.write_bytes(b"x" * PAGE)
    with start([str(progs["dynamic"]), "shared", str(data)]) as t:
        r = capture(t.pid, "-o", str(tmp_path / "ckpt"))
        assert r.returncode == 3
        text = (tmp_path / "ckpt").read_text()
        assert text.startswith(f"mosrun: checkpoint of process {t.pid} failed: it has a writable")
        assert text.count("\n") == 1 and str(data) in text
        assert t.alive()


# ------------------------------------------------------------------ output protocol


def test_stream_to_a_pipe(progs: dict[str, Path], tmp_path: Path) -> None:
    with start([str(progs["static"]), "counter", str(tmp_path / "c"), "2"]) as t:
        proc = subprocess.Popen(
            [str(CKPT), "-f", "1", "-O", "checkpoint-next=4", str(t.pid)], stdout=subprocess.PIPE
        )
        data, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0
        img = read_image(data)
        assert img.options["checkpoint-next"] == "4"
        assert t.alive()
    path = tmp_path / "streamed"
    path.write_bytes(data)
    restorer_accepts(path)


def test_relative_path_replaces_older_checkpoint(progs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    old = tmp_path / "sub" / "save.2"
    old.write_text("older")
    old.chmod(0o400)
    with start([str(progs["dynamic"]), "counter", "c.txt", "1"], cwd=tmp_path) as t:
        extra = ["-O", "checkpoint-file=save", "-O", "checkpoint-limit=3", "-T"]
        r = capture(t.pid, "-o", "sub/save.2", *extra)
        assert r.returncode == 0, r.stderr
        m = re.fullmatch(
            rb"pause_us=(\d+) total_us=(\d+) bytes=(\d+) pages=(\d+) areas=(\d+) threads=1 "
            rb"threads_us=\d+\n",
            r.stderr,
        )
        assert m, r.stderr
        assert int(m.group(3)) == old.stat().st_size
        img = read_image(old.read_bytes())
        assert int(m.group(4)) == img.end["pages"] and int(m.group(5)) == img.end["areas"]
        assert img.options["checkpoint-file"] == "save" and img.options["checkpoint-limit"] == "3"
        assert img.files[3][1] == str(tmp_path / "c.txt") and img.cwd == str(tmp_path)
        assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["save.2"]


def test_written_without_o_direct(progs: dict[str, Path], tmp_path: Path) -> None:
    """Through the page cache (a file system without O_DIRECT, like tmpfs): the
    same image."""
    shm = Path("/dev/shm")
    with start([str(progs["dynamic"]), "big", "8"]) as t:
        wait_until(lambda: t.state() == "S", what="the pause")  # its memory stays as it is
        direct = captured(t.pid, tmp_path / "direct")
        buffered = captured(t.pid, tmp_path / "buffered", env={"MOSIX_CKPT_NO_DIRECT": "1"})
        on_tmpfs = None
        if shm.is_dir() and os.access(shm, os.W_OK):
            path = shm / f"ckpt-capture-{os.getpid()}"
            try:
                on_tmpfs = captured(t.pid, path)
            finally:
                path.unlink(missing_ok=True)
    rseq = int(direct.process["rseq_addr"])  # type: ignore[call-overload]
    for img in (direct, buffered, on_tmpfs):
        if img is None:
            continue
        if rseq:  # the kernel's CPU number in the rseq area changes
            img.area_of(rseq).pages.pop(rseq & ~(PAGE - 1), None)
        assert [a.pages for a in img.areas if a.name != "[stack]"] == [
            a.pages for a in direct.areas if a.name != "[stack]"
        ]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's are root's own)."""
    d = Path(tempfile.mkdtemp(prefix="ckpt-capture-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def test_file_belongs_to_the_process_owner(progs: dict[str, Path], public_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a program as another user")
    nobody = pwd.getpwnam("nobody")
    prog = public_dir / "target"
    shutil.copy(progs["dynamic"], prog)
    prog.chmod(0o755)
    theirs = public_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    mine = public_dir / "mine"
    mine.mkdir(mode=0o755)
    argv = [str(prog), "counter", str(theirs / "c.txt"), "1"]
    ids = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    with start(argv, **ids) as t:  # type: ignore[arg-type]
        # root captures another user's process only under the discipline
        r = capture(t.pid, "-o", str(theirs / "ckpt"))
        assert r.returncode == 5 and b"does not run under the MOSIX discipline" in r.stderr
        assert list(theirs.iterdir()) == [theirs / "c.txt"]
    (theirs / "c.txt").unlink()
    launcher = [str(NATIVE / "mosix-exec"), "-m", "e", "-p", "mosrun", "--", argv[0]]
    with start([*launcher, *argv], **ids) as t:  # type: ignore[arg-type]
        img = captured(t.pid, theirs / "ckpt")
        st = (theirs / "ckpt").stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
        assert img.process["uid"] == nobody.pw_uid
        # the limits of a process root may not prlimit here: read from /proc/PID/limits
        rows = Path(f"/proc/{t.pid}/limits").read_text().splitlines()[1:]
        for r, row in enumerate(rows):
            soft, hard = (
                (1 << 64) - 1 if v == "unlimited" else int(v) for v in row[26:].split()[:2]
            )
            assert img.process["rlimits"][2 * r : 2 * r + 2] == (soft, hard)  # type: ignore[index]
        # the user may not write where root could: the user's permissions apply
        r = capture(t.pid, "-o", str(mine / "ckpt"))
        assert r.returncode == 1 and b"Permission denied" in r.stderr
        assert list(mine.iterdir()) == []
        assert t.alive() and t.children() == []


def test_unprivileged_capture(progs: dict[str, Path], public_dir: Path) -> None:
    """A user checkpointing a process of their own, without root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user")
    nobody = pwd.getpwnam("nobody")
    ids = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    prog, ckpt = public_dir / "target", public_dir / "mosix-ckpt"
    for src, dst in ((progs["static"], prog), (CKPT, ckpt)):
        shutil.copy(src, dst)
        dst.chmod(0o755)
    work = public_dir / "work"
    work.mkdir()
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    with start([str(prog), "counter", str(work / "c.txt"), "1"], **ids) as t:
        r = subprocess.run(
            [str(ckpt), "-o", str(work / "ckpt"), str(t.pid)],
            capture_output=True,
            timeout=TIMEOUT,
            **ids,  # type: ignore[arg-type]
        )
        assert r.returncode == 0, r.stderr
        img = read_image((work / "ckpt").read_bytes())
        assert img.process["uid"] == nobody.pw_uid and img.end["pages"] > 0
        assert (work / "ckpt").stat().st_uid == nobody.pw_uid
        assert t.alive() and t.children() == []


def test_actions(progs: dict[str, Path], tmp_path: Path) -> None:
    with start([str(progs["dynamic"]), "counter", str(tmp_path / "c"), "1"]) as t:
        captured(t.pid, tmp_path / "a", "-a", "stop")
        assert t.state() == "T"
        os.kill(t.pid, signal.SIGCONT)
        captured(t.pid, tmp_path / "b", "-a", "exit")
        assert t.proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    assert read_image((tmp_path / "b").read_bytes()).end["pages"] > 0


def test_failures(progs: dict[str, Path], tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    r = capture(gone.pid, "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and r.stderr == f"mosix-ckpt: no process {gone.pid}\n".encode()
    assert list(tmp_path.iterdir()) == []
    for args in (
        [],
        ["-o", "x"],
        ["-o", "x", "-f", "1", "1"],
        ["-a", "later", "-o", "x", "1"],
        ["-O", "colour=blue", "-o", "x", "1"],
        ["-O", "checkpoint-next", "-o", "x", "1"],
        ["-q", "-o", "x", "1"],
        ["-o"],
        ["-o", "x", "one"],
    ):
        r = subprocess.run([str(CKPT), *args], capture_output=True, timeout=TIMEOUT)
        assert r.returncode == 2 and r.stderr.startswith(b"mosix-ckpt: "), args
        assert r.stderr.count(b"\n") == 1
    with start([str(progs["dynamic"]), "counter", str(tmp_path / "c"), "1"]) as t:
        r = capture(t.pid, "-o", str(tmp_path / "no-such-dir" / "x"))
        assert r.returncode == 1 and r.stderr.count(b"\n") == 1
        r = capture(t.pid, "-f", "9")
        assert r.returncode == 1 and b"-f 9" in r.stderr
        assert t.alive() and t.children() == []


def test_big_image(progs: dict[str, Path], tmp_path: Path) -> None:
    with start([str(progs["dynamic"]), "big", "64"]) as t:
        r = capture(t.pid, "-o", str(tmp_path / "big"), "-T")
        assert r.returncode == 0, r.stderr
        pages = int(re.search(rb"pages=(\d+)", r.stderr).group(1))  # type: ignore[union-attr]
        assert pages >= 64 * 256
        assert t.alive()
    img = read_image((tmp_path / "big").read_bytes(), check_pages=False)
    assert img.end["pages"] == pages
    restorer_accepts(tmp_path / "big")


# ------------------------------------------------------------------ under the discipline


def mosrun_argv(*args: str) -> list[str]:
    """The installed mosrun (the same installation as NATIVE)."""
    path = shutil.which("mosrun")
    if path is None:
        pytest.fail("mosrun is not installed (pip install .)")
    return [path, *args]


@pytest.mark.parametrize("mode", ["-u", "-e"])
@pytest.mark.parametrize("kind", KINDS)
def test_under_the_discipline(progs: dict[str, Path], tmp_path: Path, kind: str, mode: str) -> None:
    """The injected clone, getitimer, wait4, rt_sigaction, sigaltstack, brk and
    mprotect pass the discipline's filter: the guard does not kill the process."""
    out = tmp_path / "count.txt"
    argv = mosrun_argv(mode, str(progs[kind]), "counter", str(out), "2")
    with start(argv, cwd=REPO) as t:
        img = captured(t.pid, tmp_path / "ckpt")
        img2 = captured(t.pid, tmp_path / "ckpt2")
        seen = len(lines_of(out))
        wait_until(lambda: len(lines_of(out)) > seen + 20, what="the counter to go on")
        assert t.alive() and t.children() == []
    p = img.process
    assert p["base_mode"] == (0 if mode == "-u" else 1)
    assert mode in img.options["inherit"].split() or (mode == "-u" and not img.options["inherit"])
    if kind == "dynamic":
        want = fmt.ShimKind.NOTIFY if mode == "-u" else fmt.ShimKind.ENOSYS
        assert p["shim_kind"] == want and p["shim_mode"] == p["base_mode"]
        assert 0 < p["shim_lo"] < p["shim_hi"]
        assert any(a.name.endswith("/libmosix_shim.so") for a in img.areas)
    else:
        assert p["shim_kind"] == fmt.ShimKind.NONE
    assert img2.end["pages"] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_recovered_from_the_image(progs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    """End to end: captured with -a exit, recovered by mosrun -R (the restorer):
    the counter goes on from where it was, every number once."""
    out = tmp_path / "count.txt"
    with start(mosrun_argv(str(progs[kind]), "counter", str(out), "2"), cwd=REPO) as t:
        wait_until(lambda: len(lines_of(out)) > 10, what="the counter to start")
        captured(t.pid, tmp_path / "ckpt", "-a", "exit")
        assert t.proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    seen = len(lines_of(out))
    rec = subprocess.Popen(
        mosrun_argv(f"-R{tmp_path / 'ckpt'}"), cwd=REPO, stdout=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: len(lines_of(out)) > seen + 50, what="the recovered counter")
    finally:
        rec.kill()
        rec.wait(timeout=TIMEOUT)
    numbers = lines_of(out)
    assert numbers == list(range(1, len(numbers) + 1))
