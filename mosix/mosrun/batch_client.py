"""mosrun -E/-M: a batch job on another node, seen from the submitting mosrun.

mosrun asks its node agent to start the job where the placement options say
(mosix.home_agent.batch_submit), then stands in for it: its standard input
goes to the job and the job's output and error come back, as BatchData frames
on the control connection; signals it receives are relayed to the job (to its
process group there); and it ends as the job ended (exit status or signal).
The pump never blocks on the agent: what it cannot send yet waits in a buffer,
and standard input is read only when that buffer is empty.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import signal
from typing import NoReturn

from mosix.agent_client import AGENT_SOCKET_ENV, connect
from mosix.agent_paths import RUN_DIR_ENV
from mosix.arguments import MosrunArgs, WhereParent, format_args
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun.launch import drop_wrapper_group, run_native
from mosix.mosrun.native_client import RELAYED, end_like, run_via_agent
from mosix.protocol import (
    HEADER,
    BatchData,
    BatchHere,
    BatchSignal,
    Exited,
    Message,
    ProtocolError,
    Refused,
    StartBatch,
    Started,
    decode_message,
    encode_message,
    frame_length,
)
from mosix.start_contract import ADMISSION_ENV, GATE_ENV, INHERIT_ENV
from mosix.sysinfo import proc_info

CHUNK = 1 << 18  # bytes per BatchData frame (frames are at most 1 MiB)
# this node's, not the job's
NOT_PASSED = (INHERIT_ENV, ADMISSION_ENV, AGENT_SOCKET_ENV, GATE_ENV, RUN_DIR_ENV)


def job_words(args: MosrunArgs) -> list[bytes]:
    """-E: the program's name and argument vector; -M: the mosrun options the job
    keeps on its node (not where to run it) and the program."""
    if args.batch is not None and args.batch.kind.value == "M":
        kept = dataclasses.replace(
            args,
            placement=WhereParent(),
            force_elsewhere=False,
            batch=None,
            exclusive_stdin=False,
            queue=None,
        )
        return [b"mosrun", *(os.fsencode(word) for word in format_args(kept))]
    return [os.fsencode(args.program[0]), *(os.fsencode(word) for word in args.argv())]


def request_of(args: MosrunArgs) -> StartBatch:
    assert args.batch is not None
    skipped = {os.fsencode(name) for name in NOT_PASSED}
    if args.batch.cwd is not None:
        cwd = os.fsencode(args.batch.cwd)
    else:
        try:
            cwd = os.getcwdb()
        except OSError as e:
            raise Failure(f"cannot find the current directory: {e.strerror}", EXIT_USAGE) from None
    return StartBatch(
        kind=args.batch.kind.value,
        placement=args.placement.option() or "",
        force_elsewhere=args.force_elsewhere,
        argv=job_words(args),
        env={k: v for k, v in os.environb.items() if k not in skipped},
        cwd=cwd,
        job=args.job_id or 0,
    )


def run_batch(args: MosrunArgs) -> MosrunArgs:
    """Submit ``args`` as a batch job and end as it ends.  On a node without a cluster
    the job runs here: -E is executed outside the discipline in place; for -M the
    arguments of an ordinary mosrun are returned, for the caller to run."""
    with connect() as client:
        drop_wrapper_group()  # -g: the connection was made with it, for the agent's gate
        client.send(request_of(args))
        reply = client.receive(timeout=None)
        if isinstance(reply, Refused):
            raise Failure(reply.error, EXIT_USAGE)
        if not isinstance(reply, Started | BatchHere):
            raise Failure("the node agent did not start the batch job", EXIT_USAGE)
        if isinstance(reply, Started):
            Pump(client.sock.fileno(), args.exclusive_stdin).run()
    return run_here(args)


def run_here(args: MosrunArgs) -> MosrunArgs:
    """The batch job on the only node, this one (see run_batch)."""
    assert args.batch is not None
    if args.batch.cwd is not None:
        try:
            os.chdir(args.batch.cwd)
        except OSError as e:
            raise Failure(
                f"-{args.batch.kind.value}{args.batch.cwd}: cannot enter the directory: "
                f"{e.strerror}",
                EXIT_USAGE,
            ) from None
    if args.batch.kind.value == "M":
        return dataclasses.replace(args, batch=None, exclusive_stdin=False)
    if proc_info.under_discipline():  # a filter cannot be removed: the agent starts it
        run_via_agent(args.argv())
    run_native(args.argv(), args.program[0])


class Pump:
    """``exclusive`` (-i): standard input is the job's alone, read ahead always.  Without
    it, a terminal is read only while mosrun is in its foreground, so a batch job an
    interactive shell put in the background takes no input typed for the shell
    (checked again when mosrun is continued: ``fg`` sends SIGCONT)."""

    def __init__(self, sock: int, exclusive: bool) -> None:
        self.sock = sock
        self.exclusive = exclusive
        self.stdin_ours = self.owns_stdin()
        self.outgoing = bytearray()
        self.incoming = bytearray()
        self.stdin_open = True

    def run(self) -> NoReturn:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in RELAYED:
            signal.signal(sig, lambda s, f: None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        os.set_blocking(self.sock, False)
        while True:
            readers = [self.sock, wake_r]
            if self.stdin_open and self.stdin_ours and not self.outgoing:
                readers.append(0)
            writers = [self.sock] if self.outgoing else []
            readable, writable, _ = select.select(readers, writers, [])
            if wake_r in readable:
                for sig in os.read(wake_r, 256):
                    self.queue(BatchSignal(signal=sig))
                self.stdin_ours = self.owns_stdin()
            if 0 in readable:
                self.read_stdin()
            if self.sock in writable:
                self.flush()
            if self.sock in readable:
                self.receive()

    def owns_stdin(self) -> bool:
        if self.exclusive or not os.isatty(0):
            return True
        try:
            return os.tcgetpgrp(0) == os.getpgrp()
        except OSError:
            return True  # not our terminal: reading it says what happens

    def queue(self, msg: Message) -> None:
        self.outgoing += encode_message(msg)

    def read_stdin(self) -> None:
        try:
            data = os.read(0, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # unreadable: the job sees the end of its input
        self.queue(BatchData(fd=0, data=data))
        if not data:
            self.stdin_open = False

    def flush(self) -> None:
        try:
            sent = os.write(self.sock, self.outgoing)
        except BlockingIOError:
            return
        except OSError as e:
            raise Failure(f"lost the node agent: {e.strerror}", EXIT_USAGE) from None
        del self.outgoing[:sent]

    def receive(self) -> None:
        try:
            data = os.read(self.sock, 1 << 20)
        except BlockingIOError:
            return
        except OSError as e:
            raise Failure(f"lost the node agent: {e.strerror}", EXIT_USAGE) from None
        if not data:
            raise Failure("lost the node agent while the batch job ran", EXIT_USAGE)
        self.incoming += data
        while len(self.incoming) >= HEADER.size:
            try:
                length = frame_length(bytes(self.incoming[: HEADER.size]))
                if len(self.incoming) < HEADER.size + length:
                    return
                msg = decode_message(bytes(self.incoming[HEADER.size : HEADER.size + length]))
            except ProtocolError as e:
                raise Failure(f"the node agent sent a bad frame: {e}", EXIT_USAGE) from None
            del self.incoming[: HEADER.size + length]
            self.handle(msg)

    def handle(self, msg: Message) -> None:
        if isinstance(msg, BatchData) and msg.fd in (1, 2):
            write_all(msg.fd, msg.data)
        elif isinstance(msg, Exited):
            end_like(msg.code)
        elif isinstance(msg, Refused):
            raise Failure(msg.error, EXIT_USAGE)


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to ``fd``; a reader that is gone drops the rest (as a closed pipe
    would for the job, which still runs to its end)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF):
                return
            raise Failure(
                f"cannot write the batch job's output: {e.strerror}", EXIT_USAGE
            ) from None
