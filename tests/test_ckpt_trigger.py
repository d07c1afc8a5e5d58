"""MOSIX's checkpoint call from the program: the guard, the shim's /proc files, the header.

Real programs under the real launcher, filter, guard and shim (mosix-exec from
the compiled parts of the ``mosix`` package these tests import).  The node
agent is a plain Unix socket server in the test (FakeAgent): it receives the
guard's frame, decodes it with mosix.protocol, and replies (or holds the reply)
as the test says.  Only the end-to-end test uses a real agent and mosrun.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
from support.agents import Agent
from support.cbuild import build_c

import mosix
from mosix import protocol
from mosix.ckpt import trigger
from mosix.ckpt.image import read_head_from
from mosix.discipline.policy import CHECKPOINT_NR
from mosix.native import NATIVE_DIR
from mosix.native_names import AGENT_SOCKET_ENV

REPO = Path(__file__).resolve().parents[1]
PROG_SOURCE = REPO / "tests" / "cprogs" / "trigger_prog.c"
HEADER = REPO / "mosix" / "include" / "mosix_checkpoint.h"
TIMEOUT = 30
PROMPT = 3.0  # seconds: "promptly", with room for a loaded machine
CSRC_COMMON = REPO / "csrc" / "common"  # raw_syscall.h
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-I", str(HEADER.parent), "-I", str(CSRC_COMMON)]
ECANCELED, EINVAL, EFAULT, ENOSYS = errno.ECANCELED, errno.EINVAL, errno.EFAULT, errno.ENOSYS


# ------------------------------------------------------------------ programs


@dataclass(frozen=True)
class Progs:
    dynamic: Path
    static: Path

    def get(self, kind: str) -> str:
        return str(self.dynamic if kind == "dynamic" else self.static)


@pytest.fixture(scope="module")
def progs(tmp_path_factory: pytest.TempPathFactory) -> Progs:
    d = tmp_path_factory.mktemp("trigger")
    d.chmod(0o755)
    dynamic = build_c(PROG_SOURCE, d / "trigger_prog", *CFLAGS)
    static = build_c(PROG_SOURCE, d / "trigger_prog-static", *CFLAGS, static=True)
    return Progs(dynamic, static)


def native(name: str) -> str:
    path = NATIVE_DIR / name
    if not path.exists():
        pytest.fail(f"{path} missing: python setup.py build_native (or pip install .)")
    return str(path)


def launcher(argv: list[str], mode: str = "e") -> list[str]:
    """``argv`` under the discipline, as mosrun runs it (same pid throughout)."""
    shim = native("libmosix_shim.so")
    return [native("mosix-exec"), "-m", mode, "-p", "mosrun", "-s", shim, "--", argv[0], *argv]


def environment(agent_socket: Path | str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (AGENT_SOCKET_ENV, "MOSIX_INHERIT")}
    env["PYTHONPATH"] = str(Path(mosix.__file__).resolve().parents[1])
    if agent_socket is not None:
        env[AGENT_SOCKET_ENV] = str(agent_socket)
    return env


def run(
    argv: list[str], agent_socket: Path | str | None, mode: str = "e", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        launcher(argv, mode),
        env=environment(agent_socket),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """A failed test leaves no waiting process behind."""
    yield
    while SPAWNED:
        p = SPAWNED.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


def spawn(
    argv: list[str], agent_socket: Path | str | None, mode: str = "e", cwd: Path | None = None
) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        launcher(argv, mode),
        env=environment(agent_socket),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    SPAWNED.append(p)
    return p


def result_line(what: str, ret: int, err: int = 0) -> str:
    return f"{what} ret={ret} errno={err}"


def outcome(stdout: str, what: str) -> tuple[int, int]:
    m = re.search(rf"^{what} ret=(-?\d+) errno=(\d+)$", stdout, re.M)
    assert m, stdout
    return int(m[1]), int(m[2])


class Lines:
    """A process's stdout, line by line, with timeouts."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next(self, timeout: float = TIMEOUT) -> str:
        return self.lines.get(timeout=timeout)


# ------------------------------------------------------------------ the agent


@dataclass
class Request:
    raw: dict[str, Any]
    message: protocol.Message
    conn: socket.socket

    def reply(self, msg: protocol.Message | bytes | None) -> None:
        """Send ``msg`` (a message, raw frame bytes, or None: just close)."""
        with contextlib.suppress(OSError):
            if isinstance(msg, protocol.Message):
                self.conn.sendall(protocol.encode_message(msg))
            elif msg is not None:
                self.conn.sendall(msg)
        self.conn.close()


@dataclass
class FakeAgent:
    """A Unix socket server standing in for the node agent's control socket."""

    path: Path
    # replied at once unless hold; a function picks the reply for each request
    auto: protocol.Message | bytes | Callable[[protocol.Message], protocol.Message] | None = None
    hold: bool = False
    requests: queue.Queue[Request] = field(default_factory=queue.Queue)
    connections: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        head = recv_exactly(conn, 4)
        payload = recv_exactly(conn, protocol.frame_length(head))
        message = protocol.decode_message(payload)
        if isinstance(message, protocol.GuardHello):  # the guard's announcement: not watched
            conn.sendall(protocol.encode_message(protocol.Refused(error="not watched here")))
            conn.close()
            return
        self.connections += 1
        request = Request(cbor2.loads(payload), message, conn)
        if not self.hold:
            request.reply(self.auto(message) if callable(self.auto) else self.auto)
        self.requests.put(request)

    def next(self, timeout: float = TIMEOUT) -> Request:
        return self.requests.get(timeout=timeout)

    def nothing_within(self, seconds: float) -> bool:
        time.sleep(seconds)
        return self.requests.empty()

    def close(self) -> None:
        self.sock.close()


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("the guard closed the connection")
        data += chunk
    return data


@pytest.fixture
def fake_agent(tmp_path: Path) -> Iterator[FakeAgent]:
    agent = FakeAgent(tmp_path / "agent.sock", auto=protocol.Checkpointed(path="/x", number=1))
    yield agent
    agent.close()


# ------------------------------------------------------------------ ptrace


class Ptrace:
    SEIZE, INTERRUPT, DETACH = 0x4206, 0x4207, 17
    WALL = 0x40000000

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.restype = ctypes.c_long
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

    def _call(self, request: int, pid: int) -> None:
        if self.libc.ptrace(request, pid, None, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def interrupt(self, pid: int) -> None:
        """Seize ``pid`` and stop it as the capturer does, until detach()."""
        self._call(self.SEIZE, pid)
        self._call(self.INTERRUPT, pid)
        _, status = os.waitpid(pid, self.WALL)
        assert os.WIFSTOPPED(status), status

    def detach(self, pid: int) -> None:
        self._call(self.DETACH, pid)


# ================================================================== the header


def define(text: str, name: str) -> int:
    m = re.search(rf"^#define {name} (0x[0-9a-fA-F]+|\d+)L?\b", text, re.M)
    assert m, name
    return int(m[1], 0)


def test_header_number_matches_the_discipline() -> None:
    table = (REPO / "csrc" / "generated" / "seccomp_table.h").read_text()
    header = HEADER.read_text()
    number = define(header, "MOSIX_CHECKPOINT_SYSCALL")
    assert number == define(table, "MOSIX_CHECKPOINT_NR") == CHECKPOINT_NR
    ops = [define(header, f"MOSIX_CHECKPOINT_OP_{n}") for n in ("CHECKPOINT", "SET_FILE")]
    ops += [define(header, f"MOSIX_CHECKPOINT_OP_{n}") for n in ("SET_LIMIT", "SET_INTERVAL")]
    assert ops == [trigger.OP_CHECKPOINT, trigger.OP_SET_FILE, trigger.OP_SET_LIMIT, 4]
    assert define(header, "MOSIX_CHECKPOINT_DONE") == trigger.DONE == 0
    assert define(header, "MOSIX_CHECKPOINT_RESUMED") == trigger.RESUMED == 1


def test_header_is_shipped_where_include_dir_says() -> None:
    assert (trigger.include_dir() / "mosix_checkpoint.h").is_file()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^mosix = \[.*"include/\*\.h"', pyproject, re.M)


@pytest.mark.parametrize("std", ["-std=c99", "-std=c11", "-std=gnu11"])
def test_header_compiles_in_strict_c(tmp_path: Path, std: str) -> None:
    src = tmp_path / "use.c"
    src.write_text(
        "#include <mosix_checkpoint.h>\n"
        'int main(void) { return mosix_checkpoint() + mosix_checkpoint_file("x") +\n'
        "    mosix_checkpoint_limit(1) + mosix_checkpoint_interval(2); }\n"
    )
    flags = [std, "-pedantic", "-Wall", "-Wextra", "-Werror", "-I", str(HEADER.parent)]
    build_c(src, tmp_path / "use", *flags, static=True)


# ================================================================== outside mosrun


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_not_under_mosrun_enosys(progs: Progs, kind: str) -> None:
    out = subprocess.run([progs.get(kind), "checkpoint"], capture_output=True, text=True)
    assert out.stdout == result_line("checkpoint", -1, ENOSYS) + "\n"


def test_python_not_under_mosrun_enosys() -> None:
    for call in (trigger.checkpoint, lambda: trigger.set_file("x"), lambda: trigger.set_limit(1)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == ENOSYS


def test_python_refuses_bad_values_itself() -> None:
    with pytest.raises(OSError) as info:
        trigger.set_limit(-1)
    assert info.value.errno == EINVAL
    with pytest.raises(TypeError):
        trigger.set_interval(True)
    with pytest.raises(ValueError):
        trigger.set_file("a\0b")


def test_proc_files_untouched_outside_mosrun(progs: Progs) -> None:
    out = subprocess.run(
        [progs.get("dynamic"), "open", "/proc/self/checkpoint", "1"],
        env=dict(os.environ, LD_PRELOAD=native("libmosix_shim.so")),
        capture_output=True,
        text=True,
    )
    assert out.stdout == result_line("open", -1, errno.ENOENT) + "\n"


# ================================================================== no agent


@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize("where", ["unset", "absent"])
def test_no_agent_ecanceled(progs: Progs, tmp_path: Path, kind: str, where: str) -> None:
    agent_socket = None if where == "unset" else tmp_path / "nobody.sock"
    for args, what in ((["checkpoint"], "checkpoint"), (["limit", "3"], "limit")):
        out = run([progs.get(kind), *args], agent_socket)
        assert out.stdout == result_line(what, -1, ECANCELED) + "\n", out.stderr


# ================================================================== the requests


@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize("mode", ["u", "e", "w"])
def test_checkpoint_request_reaches_the_agent(
    progs: Progs, fake_agent: FakeAgent, kind: str, mode: str
) -> None:
    p = spawn([progs.get(kind), "checkpoint"], fake_agent.path, mode)
    out, err = p.communicate(timeout=TIMEOUT)
    assert (out, err, p.returncode) == (result_line("checkpoint", 0) + "\n", "", 0)
    request = fake_agent.next()
    assert request.raw == {
        "op": "checkpoint",
        "pid": p.pid,
        "action": "checkpoint",
        "origin": "program",
    }
    assert request.message == protocol.Checkpoint(pid=p.pid, action="checkpoint", origin="program")
    assert fake_agent.connections == 1


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


CHECKPOINTED = cbor2.dumps({"op": "checkpointed"})
BAD_REPLIES: dict[str, protocol.Message | bytes | None] = {
    "refused": protocol.Refused(error="process 1 does not run under mosrun"),
    "failed": protocol.Checkpointed(path="/x/ckpt.1", number=1, failed="it has open pipes"),
    "done": protocol.Done(),  # not what a checkpoint is answered with
    "closed": None,
    "not-cbor": frame(b"\xff\xff\xff"),
    "not-a-map": frame(cbor2.dumps(["op", "checkpointed"])),
    "no-op": frame(cbor2.dumps({"failed": ""})),
    "op-not-text": frame(cbor2.dumps({"op": 7})),
    "op-twice": frame(b"\xa2" + cbor2.dumps("op") * 2 + cbor2.dumps("op") + b"\x64done"),
    "op-with-nul": frame(cbor2.dumps({"op": "checkpointed\0"})),
    "failed-not-text": frame(cbor2.dumps({"op": "checkpointed", "failed": 1, "path": "/y"})),
    "trailing": frame(CHECKPOINTED + b"\x00"),
    "indefinite": frame(b"\xbf" + CHECKPOINTED[1:] + b"\xff"),
    "bad-key": frame(b"\xa1\x01" + cbor2.dumps("checkpointed")),
    "deep": frame(b"\xa2" + CHECKPOINTED[1:] + b"\x61x" + b"\x81" * 40 + b"\x00"),
    "huge-count": frame(b"\xa2" + CHECKPOINTED[1:] + b"\x61x\x9b" + b"\xff" * 8),
    "zero-length": struct.pack(">I", 0),
    "too-long": struct.pack(">I", (1 << 20) + 1) + b"\xa0",
    "truncated": struct.pack(">I", 40) + CHECKPOINTED,
}


@pytest.mark.parametrize("name", sorted(BAD_REPLIES))
def test_checkpoint_fails_unless_checkpointed(
    progs: Progs, fake_agent: FakeAgent, name: str
) -> None:
    fake_agent.auto = BAD_REPLIES[name]
    out = run([progs.get("dynamic"), "checkpoint"], fake_agent.path)
    assert out.stdout == result_line("checkpoint", -1, ECANCELED) + "\n", out.stderr
    assert fake_agent.next().message.OP == "checkpoint"


def test_checkpoint_reply_with_more_fields_is_accepted(progs: Progs, fake_agent: FakeAgent) -> None:
    body = cbor2.dumps(
        {"number": 2**40, "path": "é" * 300, "op": "checkpointed", "extra": [{"a": [1.5, None]}]}
    )
    fake_agent.auto = struct.pack(">I", len(body)) + body
    out = run([progs.get("dynamic"), "checkpoint"], fake_agent.path)
    assert out.stdout == result_line("checkpoint", 0) + "\n", out.stderr


@pytest.mark.parametrize("kind", ["dynamic", "static"])
@pytest.mark.parametrize(
    ("args", "key", "value"),
    [
        (["file", "saves/run"], "file", "{cwd}/saves/run"),
        (["file", "/abs/ckpt.4"], "file", "/abs/ckpt.4"),
        (["file", "dir/é.x"], "file", "{cwd}/dir/é.x"),
        (["file", "bad\udcff\x1b[2J"], "file", "{cwd}/bad\udcff\x1b[2J"),  # any bytes
        (["limit", "0"], "limit", 0),
        (["limit", "7"], "limit", 7),
        (["interval", "90"], "interval", 90),
        (["interval", "2147483647"], "interval", 2147483647),
    ],
)
def test_settings_requests(
    progs: Progs,
    fake_agent: FakeAgent,
    tmp_path: Path,
    kind: str,
    args: list[str],
    key: str,
    value: Any,
) -> None:
    fake_agent.auto = protocol.Done()
    p = spawn([progs.get(kind), *args], fake_agent.path, cwd=tmp_path)
    out, _ = p.communicate(timeout=TIMEOUT)
    assert out == result_line(args[0], 0) + "\n"
    if isinstance(value, str):  # a file name: a CBOR byte string
        value = os.fsencode(value.format(cwd=tmp_path))
    request = fake_agent.next()
    assert request.raw == {"op": "checkpoint-settings", "pid": p.pid, key: value}
    expected = {"pid": p.pid, "file": None, "limit": None, "interval": None, key: value}
    assert request.message == protocol.CheckpointSettings(**expected)


@pytest.mark.parametrize("reply", [protocol.Refused(error="no"), protocol.Checkpointed()])
def test_settings_fail_unless_done(
    progs: Progs, fake_agent: FakeAgent, reply: protocol.Message
) -> None:
    fake_agent.auto = reply
    out = run([progs.get("dynamic"), "interval", "5"], fake_agent.path)
    assert out.stdout == result_line("interval", -1, ECANCELED) + "\n"


@pytest.mark.parametrize(
    ("args", "what", "err"),
    [
        (["raw", "0", "0"], "raw", EINVAL),
        (["raw", "5", "0"], "raw", EINVAL),
        (["raw", "0x100000001", "0"], "raw", EINVAL),
        (["limit", "-1"], "limit", EINVAL),
        (["interval", "-5"], "interval", EINVAL),
        (["raw", "3", "0x80000000"], "raw", EINVAL),
        (["file", ""], "file", EINVAL),
        (["raw", "2", "0"], "raw", EFAULT),
        (["badptr"], "badptr", EFAULT),
    ],
)
def test_bad_arguments_never_reach_the_agent(
    progs: Progs, fake_agent: FakeAgent, args: list[str], what: str, err: int
) -> None:
    out = run([progs.get("static"), *args], fake_agent.path)
    assert out.stdout == result_line(what, -1, err) + "\n", out.stderr
    assert fake_agent.connections == 0


def test_file_name_limits(progs: Progs, fake_agent: FakeAgent) -> None:
    fake_agent.auto = protocol.Done()
    longest = "/" + "d/" * 2046 + "x"  # 4094 bytes and the NUL
    out = run([progs.get("dynamic"), "file", longest], fake_agent.path)
    assert out.stdout == result_line("file", 0) + "\n"
    assert fake_agent.next().raw["file"] == longest.encode()
    out = run([progs.get("dynamic"), "file", longest + "yz"], fake_agent.path)
    assert out.stdout == result_line("file", -1, errno.ENAMETOOLONG) + "\n"
    assert fake_agent.connections == 1


def test_a_non_utf8_file_name_reaches_the_agent_as_its_bytes(
    progs: Progs, fake_agent: FakeAgent
) -> None:
    fake_agent.auto = protocol.Done()
    p = subprocess.run(
        launcher([progs.get("dynamic"), "file", "/ckpt/bad\udcff"]),
        env=environment(fake_agent.path),
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert p.stdout == (result_line("file", 0) + "\n").encode()
    assert fake_agent.next().message.file == b"/ckpt/bad\xff"


# ================================================================== waiting


def test_guard_serves_other_processes_while_a_request_waits(
    progs: Progs, fake_agent: FakeAgent
) -> None:
    fake_agent.hold = True
    p = spawn([progs.get("dynamic"), "fork-wait"], fake_agent.path, mode="e")
    lines = Lines(p)
    parent = int(lines.next().split()[1])
    request = fake_agent.next()  # the child's checkpoint call waits for the agent
    assert request.message == protocol.Checkpoint(
        pid=request.raw["pid"], action="checkpoint", origin="program"
    )
    assert request.raw["pid"] != parent
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()
    start = time.monotonic()
    assert lines.next(timeout=PROMPT) == result_line("unsupported", -1, ENOSYS)
    assert time.monotonic() - start < PROMPT
    request.reply(protocol.Checkpointed(path="/x", number=1))
    assert lines.next() == result_line("child-checkpoint", 0)
    assert p.wait(timeout=TIMEOUT) == 0


def test_answers_go_to_each_waiting_process(progs: Progs, fake_agent: FakeAgent) -> None:
    fake_agent.hold = True
    procs = [spawn([progs.get("dynamic"), "checkpoint"], fake_agent.path) for _ in range(3)]
    requests = {r.raw["pid"]: r for r in (fake_agent.next() for _ in procs)}
    assert set(requests) == {p.pid for p in procs}
    answers = [protocol.Refused(error="no"), protocol.Checkpointed(), protocol.Refused()]
    for p, answer in reversed(list(zip(procs, answers, strict=True))):
        requests[p.pid].reply(answer)
        out, _ = p.communicate(timeout=TIMEOUT)
        expected = (
            result_line("checkpoint", 0)
            if answer.OP == "checkpointed"
            else (result_line("checkpoint", -1, ECANCELED))
        )
        assert out == expected + "\n"


@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_reissued_call_after_ptrace_interrupt_joins_the_request(
    progs: Progs, fake_agent: FakeAgent, kind: str
) -> None:
    """The capturer's ptrace interrupt drops the notification; the call is re-issued."""
    fake_agent.hold = True
    p = spawn([progs.get(kind), "checkpoint"], fake_agent.path)
    request = fake_agent.next()
    tracer = Ptrace()
    tracer.interrupt(p.pid)
    tracer.detach(p.pid)
    assert fake_agent.nothing_within(0.5)  # no second request for the re-issued call
    request.reply(protocol.Checkpointed())
    out, _ = p.communicate(timeout=TIMEOUT)
    assert out == result_line("checkpoint", 0) + "\n"
    assert fake_agent.connections == 1


@pytest.mark.parametrize("answer", ["checkpointed", "refused"])
def test_answer_arriving_while_stopped_waits_for_the_reissued_call(
    progs: Progs, fake_agent: FakeAgent, answer: str
) -> None:
    """As with the real capturer: the agent answers while the process is still stopped."""
    fake_agent.hold = True
    p = spawn([progs.get("dynamic"), "checkpoint"], fake_agent.path)
    lines = Lines(p)
    request = fake_agent.next()
    tracer = Ptrace()
    tracer.interrupt(p.pid)
    request.reply(protocol.Checkpointed() if answer == "checkpointed" else protocol.Refused())
    time.sleep(0.3)  # the guard has the answer and no notification to give it to
    tracer.detach(p.pid)
    expected = (0, 0) if answer == "checkpointed" else (-1, ECANCELED)
    assert lines.next() == result_line("checkpoint", *expected)
    assert p.wait(timeout=TIMEOUT) == 0
    assert fake_agent.connections == 1


def test_signal_with_sa_restart_reissues_the_same_request(
    progs: Progs, fake_agent: FakeAgent
) -> None:
    fake_agent.hold = True
    p = spawn([progs.get("dynamic"), "restartable"], fake_agent.path)
    lines = Lines(p)
    pid = int(lines.next().split()[1])
    request = fake_agent.next()
    for _ in range(3):
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.1)
    assert fake_agent.nothing_within(0.3)
    request.reply(protocol.Checkpointed())
    assert lines.next() == result_line("checkpoint", 0)
    assert p.wait(timeout=TIMEOUT) == 0


def test_process_killed_while_waiting_leaves_the_guard_serving(
    progs: Progs, fake_agent: FakeAgent
) -> None:
    fake_agent.hold = True
    p = spawn([progs.get("dynamic"), "fork-wait"], fake_agent.path)
    lines = Lines(p)
    lines.next()
    request = fake_agent.next()
    os.kill(request.raw["pid"], signal.SIGKILL)  # the waiting child
    request.reply(protocol.Checkpointed())  # to a notification that is gone
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()
    assert lines.next(timeout=PROMPT) == result_line("unsupported", -1, ENOSYS)
    assert p.wait(timeout=TIMEOUT) == 2  # fork-wait's status when its child was killed


# ================================================================== /proc files


@pytest.mark.parametrize("how", ["fopen", "open"])
@pytest.mark.parametrize("self_name", ["self", "pid"])
@pytest.mark.parametrize(
    ("name", "text", "raw"),
    [
        ("checkpoint", "1", {"op": "checkpoint", "action": "checkpoint", "origin": "program"}),
        ("checkpoint", "12\n", {"op": "checkpoint", "action": "checkpoint", "origin": "program"}),
        ("checkpointfile", "mysave\n", {"op": "checkpoint-settings", "file": b"{cwd}/mysave"}),
        ("checkpointlimit", "3\n", {"op": "checkpoint-settings", "limit": 3}),
        ("checkpointinterval", " 15 ", {"op": "checkpoint-settings", "interval": 15}),
    ],
)
def test_proc_files_reach_the_guard(
    progs: Progs,
    fake_agent: FakeAgent,
    tmp_path: Path,
    how: str,
    self_name: str,
    name: str,
    text: str,
    raw: dict[str, Any],
) -> None:
    fake_agent.auto = protocol.Checkpointed() if name == "checkpoint" else protocol.Done()
    # /proc/PID/... needs the pid before the program runs: a shell that execs it
    path = f"/proc/$$/{name}" if self_name == "pid" else f"/proc/self/{name}"
    script = f'exec "$0" {how} "{path}" "$1"'
    p = spawn(["/bin/sh", "-c", script, progs.get("dynamic"), text], fake_agent.path, cwd=tmp_path)
    out, err = p.communicate(timeout=TIMEOUT)
    assert (out, err) == (result_line(how, 0) + "\n", "")
    request = fake_agent.next()
    cwd = os.fsencode(tmp_path)
    expected = {k: v.replace(b"{cwd}", cwd) if isinstance(v, bytes) else v for k, v in raw.items()}
    assert request.raw == {**expected, "pid": p.pid}


@pytest.mark.parametrize("how", ["fopen", "open"])
@pytest.mark.parametrize(
    ("name", "text", "err"),
    [
        ("checkpoint", "yes", EINVAL),
        ("checkpoint", "-1", EINVAL),
        ("checkpointlimit", "-3", EINVAL),
        ("checkpointinterval", "1.5", EINVAL),
        ("checkpointlimit", "99999999999", EINVAL),
        ("checkpointfile", "\n", EINVAL),
    ],
)
def test_proc_files_bad_values(
    progs: Progs, fake_agent: FakeAgent, how: str, name: str, text: str, err: int
) -> None:
    out = run([progs.get("dynamic"), how, f"/proc/self/{name}", text], fake_agent.path)
    assert out.stdout == result_line(how, -1, err) + "\n"
    assert fake_agent.connections == 0


@pytest.mark.parametrize("how", ["fopen", "open"])
def test_proc_files_zero_or_nothing_asks_nothing(
    progs: Progs, fake_agent: FakeAgent, how: str
) -> None:
    for text in ("0", "0\n", ""):
        out = run([progs.get("dynamic"), how, "/proc/self/checkpoint", text], fake_agent.path)
        assert out.stdout == result_line(how, 0) + "\n"
    assert fake_agent.connections == 0


@pytest.mark.parametrize("how", ["fopen", "open"])
def test_proc_file_close_fails_with_the_calls_errno(
    progs: Progs, fake_agent: FakeAgent, how: str
) -> None:
    fake_agent.auto = protocol.Refused(error="it has open pipes")
    out = run([progs.get("dynamic"), how, "/proc/self/checkpoint", "1"], fake_agent.path)
    assert out.stdout == result_line(how, -1, ECANCELED) + "\n"
    out = run([progs.get("dynamic"), how, "/proc/self/checkpointlimit", "2"], None)
    assert out.stdout == result_line(how, -1, ECANCELED) + "\n"


def test_proc_files_read_back_defaults(progs: Progs, fake_agent: FakeAgent) -> None:
    expected = {"checkpoint": "0\n", "checkpointfile": "", "checkpointlimit": "0\n"}
    expected["checkpointinterval"] = "0\n"
    for name, text in expected.items():
        out = run([progs.get("dynamic"), "read", f"/proc/self/{name}"], fake_agent.path)
        assert out.stdout == f"read [{text}]\n"
    assert fake_agent.connections == 0


PYTHON_PROC = """
import errno
def write(name, text):
    with open('/proc/self/' + name, 'w') as f:
        f.write(text)
def read(name):
    with open('/proc/self/' + name) as f:
        return f.read()
open('/proc/self/checkpoint', 'w').write('1')
write('checkpointfile', 'py.save\\n')
write('checkpointlimit', '4')
write('checkpointinterval', '9\\n')
print(repr(read('checkpointfile')), repr(read('checkpointlimit')), repr(read('checkpointinterval')))
try:
    write('checkpointlimit', 'x')
except OSError as e:
    print('error', errno.errorcode[e.errno])
"""


def test_proc_files_from_python(fake_agent: FakeAgent, tmp_path: Path) -> None:
    # the settings follow the checkpoint at once: each request gets its own reply
    fake_agent.auto = lambda m: (
        protocol.Checkpointed() if isinstance(m, protocol.Checkpoint) else protocol.Done()
    )
    p = spawn([sys.executable, "-c", PYTHON_PROC], fake_agent.path, cwd=tmp_path)
    assert p.stdout is not None
    first = fake_agent.next()
    assert first.raw == {
        "op": "checkpoint",
        "pid": p.pid,
        "action": "checkpoint",
        "origin": "program",
    }
    out, err = p.communicate(timeout=TIMEOUT)
    assert (out, err) == ("'py.save\\n' '4\\n' '9\\n'\nerror EINVAL\n", "")
    settings = [fake_agent.next().raw for _ in range(3)]
    assert settings == [
        {"op": "checkpoint-settings", "pid": p.pid, "file": f"{tmp_path}/py.save".encode()},
        {"op": "checkpoint-settings", "pid": p.pid, "limit": 4},
        {"op": "checkpoint-settings", "pid": p.pid, "interval": 9},
    ]


PYTHON_TRIGGER = """
import errno
from mosix.ckpt import trigger
from mosix.ckpt.image import read_head_from
print(trigger.checkpoint())
trigger.set_file('t.ckpt')
trigger.set_limit(5)
trigger.set_interval(0)
"""


def test_python_trigger_module(fake_agent: FakeAgent, tmp_path: Path) -> None:
    fake_agent.hold = True
    p = spawn([sys.executable, "-c", PYTHON_TRIGGER], fake_agent.path, cwd=tmp_path)
    fake_agent.next().reply(protocol.Checkpointed())
    for expected in ({"file": f"{tmp_path}/t.ckpt".encode()}, {"limit": 5}, {"interval": 0}):
        request = fake_agent.next()
        assert request.raw == {"op": "checkpoint-settings", "pid": p.pid, **expected}
        request.reply(protocol.Done())
    out, err = p.communicate(timeout=TIMEOUT)
    assert (out, err, p.returncode) == ("0\n", "", 0)


def test_python_trigger_raises_the_errno(fake_agent: FakeAgent) -> None:
    fake_agent.auto = protocol.Refused(error="no")
    code = "from mosix.ckpt import trigger\ntry:\n    trigger.checkpoint()\nexcept OSError as e:\n"
    code += "    print(e.errno)\n"
    out = run([sys.executable, "-c", code], fake_agent.path)
    assert out.stdout == f"{ECANCELED}\n", out.stderr


# ================================================================== end to end

PYTHON_CHECKPOINT = (
    "from mosix.ckpt import trigger; r = trigger.checkpoint(); "
    "print(f'checkpoint ret={r} errno=0', flush=True)"
)


def e2e_argv(progs: Progs, kind: str) -> list[str]:
    if kind == "python":
        return [sys.executable, "-c", PYTHON_CHECKPOINT]
    return [progs.get(kind), "checkpoint"]


def checkpoint_under_mosrun(agent: Agent, progs: Progs, kind: str) -> tuple[Path, Path, int]:
    """Run ``kind``'s checkpoint call under mosrun (no pipes: they cannot be checkpointed)."""
    work = agent.run_dir.parent / "work"
    work.mkdir(exist_ok=True)
    out = work / "run.out"
    with open(out, "w") as stdout, open(work / "run.err", "w") as stderr:
        p = agent.spawn(
            "mosrun",
            *e2e_argv(progs, kind),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=work,
        )
        assert p.wait(timeout=TIMEOUT) == 0, (work / "run.err").read_text()
    assert out.read_text() == result_line("checkpoint", 0) + "\n", (work / "run.err").read_text()
    return work, out, p.pid


@pytest.mark.parametrize("kind", ["dynamic", "static", "python"])
def test_mosix_checkpoint_under_mosrun_writes_the_file(
    agent: Agent, progs: Progs, kind: str
) -> None:
    work, _, pid = checkpoint_under_mosrun(agent, progs, kind)
    assert sorted(f.name for f in work.glob("ckpt.*")) == [f"ckpt.{pid}.1"]
    assert (work / f"ckpt.{pid}.1").stat().st_size > 0


@pytest.mark.parametrize("kind", ["dynamic", "static", "python"])
def test_recovered_program_sees_resumed(agent: Agent, progs: Progs, kind: str) -> None:
    work, _, pid = checkpoint_under_mosrun(agent, progs, kind)
    recovered = work / "recovered.out"
    result = agent.run("mosrun", f"-R{work}/ckpt.{pid}.1", f"-O1={recovered}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert recovered.read_text() == result_line("checkpoint", 1) + "\n"


def test_checkpoint_file_set_by_the_program(agent: Agent, progs: Progs) -> None:
    work = agent.run_dir.parent / "work"
    work.mkdir()
    with open(work / "run.out", "w") as stdout:
        p = agent.spawn(
            "mosrun",
            "-N2",
            progs.get("static"),
            "series",
            "saves",
            "3",
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            cwd=work,
        )
        assert p.wait(timeout=TIMEOUT) == 0
    lines = [result_line("file", 0)] + [result_line("checkpoint", 0)] * 3
    assert (work / "run.out").read_text() == "\n".join(lines) + "\n"
    assert sorted(f.name for f in work.iterdir() if f.name.startswith(("saves", "ckpt"))) == [
        "saves.1",
        "saves.2",
    ]


def test_relative_agent_socket_is_taken_from_the_launchers_cwd(
    progs: Progs, fake_agent: FakeAgent
) -> None:
    out = run(
        [progs.get("dynamic"), "checkpoint"], fake_agent.path.name, cwd=fake_agent.path.parent
    )
    assert out.stdout == result_line("checkpoint", 0) + "\n", out.stderr
    assert fake_agent.next().message.OP == "checkpoint"


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_a_shell_checkpoints_itself_by_redirection(agent: Agent, shell: str) -> None:
    """`echo 1 > /proc/self/checkpoint` in bash and dash: the shell moves the file to
    descriptor 1 (dup2), closes the original and, after echo, puts descriptor 1 back
    (dup2 again): the request is made then, as the last descriptor of it goes."""
    work = agent.run_dir.parent / "work"
    work.mkdir()
    out = work / "run.out"
    script = 'echo 1 > /proc/self/checkpoint; echo "rc $?"'
    with open(out, "w") as stdout, open(work / "run.err", "w") as stderr:
        p = agent.spawn(
            "mosrun",
            shell,
            "-c",
            script,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=work,
        )
        assert p.wait(timeout=TIMEOUT) == 0, (work / "run.err").read_text()
    assert out.read_text() == "rc 0\n"
    ckpt = work / f"ckpt.{p.pid}.1"
    head = read_head_from(str(ckpt))
    assert (head.pid, head.comm) == (p.pid, shell)
    recovered = work / "recovered.out"
    result = agent.run("mosrun", f"-R{ckpt}", f"-O1={recovered}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert recovered.read_text() == "rc 0\n"  # it went on from its redirection's end
