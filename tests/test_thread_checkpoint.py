"""Multi-threaded processes are checkpointed and recovered (issue 15, second half).

Real agent, real mosrun, real programs: C programs built with -pthread
(tests/cprogs/thread_ckpt.c: mutex, condition variable, barrier, TLS, a
sleeping thread, a thread blocked in a futex wait, per-thread signal masks,
pthread_kill to a chosen thread after recovery, signals pending for a thread
and for the process; tests/cprogs/timer_ckpt.c: POSIX timers signalling the
process and a chosen thread, and one never armed), a python3 script using
threading and numpy matrix multiplications in two threads (the system
python3, which has numpy).  Each pauses (blocked reading stdin) with its threads alive, is
checkpointed there by ``migrate PID checkpoint``, killed, recovered with
``mosrun -R`` and must print exactly what an uninterrupted run prints, with
the same exit status.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from support.agents import Agent
from support.cbuild import build_c

from mosix.ckpt import format as fmt
from mosix.ckpt.image import read_head_from
from mosix.native.checksum import mxh64

REPO = Path(__file__).resolve().parents[1]
CPROGS = REPO / "tests" / "cprogs"
SYSTEM_PYTHON = "/usr/bin/python3"  # numpy is installed for it

PY_THREADS = """
import sys, threading
lock = threading.Lock()
cond = threading.Condition(lock)
state = {"go": False, "sum": 0}
local = threading.local()
def work(n):
    local.n = n
    part = sum(i * i for i in range(20000 * n))
    with cond:
        while not state["go"]:
            cond.wait()
        state["sum"] += part + local.n
threads = [threading.Thread(target=work, args=(i + 1,)) for i in range(4)]
for t in threads: t.start()
print("paused", flush=True)
sys.stdin.read(1)
with cond:
    state["go"] = True
    cond.notify_all()
for t in threads: t.join()
print("sum", state["sum"], "threads", threading.active_count())
sys.exit(3)
"""

PY_NUMPY = """
import sys, threading
import numpy as np
a = np.arange(300 * 300, dtype=np.float64).reshape(300, 300) % 17
b = (a.T + 1.0) / 3.0
ready, go, results = threading.Barrier(3), threading.Event(), [None, None]
def work(i):
    first = (a + i) @ b  # numpy lets go of the GIL: both multiply at once
    ready.wait()
    go.wait()
    results[i] = "%.6e %.6e" % (first.sum(), (first @ b).trace())
workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
for w in workers: w.start()
ready.wait()
print("paused", flush=True)
sys.stdin.read(1)
go.set()
for w in workers: w.join()
print(*results)
sys.exit(3)
"""


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    d = tmp_path_factory.mktemp("threads")
    d.chmod(0o755)
    flags = ("-O2", "-Wall", "-Wextra", "-Werror", "-pthread")
    build_c(CPROGS / "thread_ckpt.c", d / "pthreads", *flags)
    build_c(CPROGS / "timer_ckpt.c", d / "timers", *flags)
    (d / "threads.py").write_text(PY_THREADS)
    (d / "matmul.py").write_text(PY_NUMPY)
    return {
        "pthreads": [str(d / "pthreads")],
        "timers": [str(d / "timers")],
        "python": [sys.executable, "-P", str(d / "threads.py")],
        "numpy": [SYSTEM_PYTHON, str(d / "matmul.py")],
    }


@pytest.fixture
def work(agent_base: Path) -> Path:
    d = agent_base / "work"
    d.mkdir()
    return d


def start(agent: Agent, work: Path, argv: list[str]) -> subprocess.Popen[str]:
    p = agent.spawn("mosrun", *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work)
    assert p.stdout is not None
    assert p.stdout.readline() == "paused\n"
    return p


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def checkpointed(agent: Agent, work: Path, argv: list[str]) -> tuple[Path, int]:
    """Start argv, checkpoint it while paused with its threads, kill it: (image, threads)."""
    p = start(agent, work, argv)
    threads = threads_of(p.pid)
    result = agent.run("migrate", str(p.pid), "checkpoint", cwd=work)
    ckpt = work / f"ckpt.{p.pid}.1"
    assert result.stdout == f"{p.pid}: checkpoint 1 written to {ckpt}\n", result.stderr
    p.kill()
    p.wait()
    return ckpt, threads


def recover(agent: Agent, ckpt: Path) -> tuple[str, int]:
    r = agent.spawn("mosrun", f"-R{ckpt}", stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/")
    out, _ = r.communicate("x", timeout=120)
    return out, r.returncode


@pytest.mark.parametrize("kind", ["pthreads", "python", "numpy", "timers"])
def test_recovered_threads_finish_byte_identical(
    agent: Agent, work: Path, programs: dict[str, list[str]], kind: str
) -> None:
    argv = programs[kind]
    reference = agent.run("mosrun", *argv, input="x", cwd=work)
    assert reference.returncode == 3, reference.stderr
    ckpt, threads = checkpointed(agent, work, argv)
    want = {"pthreads": 5, "python": 5, "timers": 2, "numpy": 3}
    # numpy's BLAS may add threads of its own (OpenBLAS: one per CPU)
    assert threads == want[kind] or (kind == "numpy" and threads > want[kind])
    head = read_head_from(str(ckpt))
    assert head.process["threads"] == threads
    out, code = recover(agent, ckpt)
    assert (out, code) == (reference.stdout.removeprefix("paused\n"), 3)


def test_the_pthread_program_says_what_each_thread_saw(
    agent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    """Each thread's mask and pending signal, the signal to a chosen thread, the joins."""
    ckpt, _ = checkpointed(agent, work, programs["pthreads"])
    out, code = recover(agent, ckpt)
    assert code == 3
    assert out.splitlines()[1:] == [
        "signal went to thread 3",
        "blocked thread kept its mask 1",
        "joined 234",
        "main tls 0",
        "pending for the blocker: code 0",  # queued again for that thread (99: lost)
        "pending for the process: code 0",  # and for the process
    ]


def test_inspect_lists_the_files_of_a_threaded_image(
    agent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    ckpt, _ = checkpointed(agent, work, programs["pthreads"])
    result = agent.run("mosrun", f"-I{ckpt}")
    assert result.returncode == 0, result.stderr
    rows = {int(line.split()[0]): line.split() for line in result.stdout.splitlines()[3:]}
    assert set(rows) == {0, 1, 2}


def thread_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each THREAD record's payload."""
    at, out = fmt.FILE_HEADER.size, []
    while at < len(data):
        h = fmt.RECORD_HEADER.unpack(data[at : at + fmt.RECORD_HEADER.size])
        at += fmt.RECORD_HEADER.size
        length = h["length"]
        assert isinstance(length, int)
        if h["kind"] == fmt.Kind.THREAD:
            out.append((at, length))
        if h["kind"] == fmt.Kind.AREA:
            break
        at += length
    return out


def test_a_damaged_thread_record_is_refused_in_one_line(
    agent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    ckpt, _ = checkpointed(agent, work, programs["pthreads"])
    data = bytearray(ckpt.read_bytes())
    records = thread_records(bytes(data))
    assert len(records) == 4
    offset, _ = records[2]
    data[offset + 40] ^= 0x10  # a register of the third thread
    bad = work / "bad.img"
    bad.write_bytes(bytes(data))
    r = agent.run("mosrun", f"-R{bad}", input="x", cwd=work)
    assert r.returncode == 125, r.stderr  # as a damaged single-threaded image
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"mosrun: -R{bad}: "), r.stderr
    assert "checksum mismatch" in r.stderr
    assert "total" not in r.stdout


PY_OWN_REQUEST = """
import sys, threading
from mosix.ckpt import trigger
stop = threading.Event()
sleeper = threading.Thread(target=stop.wait)
sleeper.start()
result = []
asker = threading.Thread(target=lambda: result.append(trigger.checkpoint()))
asker.start()
asker.join()
stop.set()
sleeper.join()
print("ret", result[0], threading.active_count(), flush=True)
"""


def test_a_thread_asks_for_the_checkpoint_itself(agent: Agent, work: Path) -> None:
    """The program's own request, from a thread that is not the main one: DONE, then RESUMED."""
    script = work / "own.py"
    script.write_text(PY_OWN_REQUEST)
    with open(work / "run.out", "w") as out, open(work / "run.err", "w") as err:
        p = agent.spawn(
            "mosrun",
            sys.executable,
            str(script),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=work,
        )
        assert p.wait(timeout=60) == 0, (work / "run.err").read_text()
    assert (work / "run.out").read_text() == "ret 0 1\n"
    recovered = work / "recovered.out"
    r = agent.run("mosrun", f"-R{work}/ckpt.{p.pid}.1", f"-O1={recovered}", cwd=work)
    assert r.returncode == 0, r.stderr
    assert recovered.read_text() == "ret 1 1\n"


def records_of(data: bytes) -> list[tuple[int, bytes]]:
    """(kind, payload) of every record."""
    at, out = fmt.FILE_HEADER.size, []
    while at < len(data):
        h = fmt.RECORD_HEADER.unpack(data[at : at + fmt.RECORD_HEADER.size])
        kind, length = h["kind"], h["length"]
        assert isinstance(kind, int) and isinstance(length, int)
        at += fmt.RECORD_HEADER.size
        out.append((kind, data[at : at + length]))
        at += length
    return out


def encoded(header: bytes, records: list[tuple[int, bytes]]) -> bytes:
    """An image of these records with every checksum right (a hostile one, not a damaged one)."""
    out = [header]
    for seq, (kind, payload) in enumerate(records):
        head = struct.pack("<HHIQQ", kind, 0, seq, len(payload), mxh64(payload))
        out += [head, struct.pack("<Q", mxh64(head)), payload]
    return b"".join(out)


def edited(
    records: list[tuple[int, bytes]], kind: int, n: int, s: fmt.Struct, **fields: object
) -> list[tuple[int, bytes]]:
    """The records with the n-th of ``kind`` given new field values."""
    out, seen = [], 0
    for k, payload in records:
        if k == kind:
            if seen == n:
                values = s.unpack(payload)
                values.update(fields)
                payload = s.pack(**values) + payload[s.size :]
            seen += 1
        out.append((k, payload))
    return out


def test_hostile_thread_records_are_refused_before_anything_changes(
    agent: Agent, work: Path, programs: dict[str, list[str]]
) -> None:
    """Checksums right, contents wrong: one line, status 125, the program never runs."""
    ckpt, _ = checkpointed(agent, work, programs["pthreads"])
    data = ckpt.read_bytes()
    header, records = data[: fmt.FILE_HEADER.size], records_of(data)
    second_tid = fmt.THREAD.unpack(next(p for k, p in records if k == fmt.Kind.THREAD))["tid"]
    cases = {
        "more threads counted": (
            edited(records, fmt.Kind.PROCESS, 0, fmt.PROCESS, threads=6),
            "THREAD records short of the PROCESS record's count",
        ),
        "a thread twice": (
            edited(records, fmt.Kind.THREAD, 1, fmt.THREAD, tid=second_tid),
            "thread id twice",
        ),
        "a signal for no thread": (
            edited(records, fmt.Kind.SIGNAL, 0, fmt.SIGNAL, tid=1),
            "signal pending for an unknown thread",
        ),
        "a kernel-space thread pointer": (
            edited(records, fmt.Kind.THREAD, 0, fmt.THREAD, tid_addr=1 << 63),
            "thread id address",
        ),
    }
    for name, (bad_records, reason) in cases.items():
        bad = work / "hostile.img"
        bad.unlink(missing_ok=True)
        bad.write_bytes(encoded(header, bad_records))
        r = agent.run("mosrun", f"-R{bad}", input="x", cwd=work)
        assert r.returncode == 125, (name, r.stderr)
        assert r.stderr.count("\n") == 1 and reason in r.stderr, (name, r.stderr)
        assert "total" not in r.stdout
