"""A fuzzer of the node agent's control socket, run by tests/test_agent_fuzz.py as an
unprivileged user.

    agent_fuzz_client.py SOCKET SEED SECONDS ACTIONS

Drives random frames (garbage after a valid length, CBOR of random shape, every
request with fields of the wrong type, plausible requests with random values,
huge declared lengths, truncated frames, descriptors passed along, listings of
entries with commands near the frame limit) and random
connection patterns (open/close storms, half-open connections, slow writers,
pipelined frames) until SECONDS or ACTIONS run out.  Every 50 actions it checks
that the agent still answers.  Prints one line of counts; exits 1 with the
seed and the last actions when the agent stops answering.
"""

from __future__ import annotations

import array
import contextlib
import os
import random
import socket
import struct
import sys
import time
import types
import typing
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import cbor2

from mosix.protocol import (
    MAX_FRAME,
    MESSAGES,
    Enqueue,
    GetStatus,
    ListProcesses,
    ListQueue,
    Status,
    decode_message,
    encode_message,
)

REPLY_WAIT = 0.05  # most answers come at once; a few requests have none
ALIVE_WAIT = 15.0


class Fuzzer:
    def __init__(self, path: str, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.slow: list[tuple[socket.socket, bytes]] = []
        self.held: deque[socket.socket] = deque()

    # ---------------------------------------------------------- values

    def text(self) -> str:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            return ""
        if kind == 1:
            return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 20)))
        if kind == 2:
            return "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
        return rng.choice(["q", "Q", "run", "abort", "cngpri", "home", "out", "checkpoint", "/"])

    def integer(self) -> int:
        rng = self.rng
        return rng.choice(
            [
                0,
                1,
                -1,
                os.getpid(),
                os.getppid(),
                rng.randrange(1, 1 << 22),
                rng.randrange(-(1 << 63), 1 << 63),
                (1 << 63) - 1,
                -(1 << 63),
                1 << 62,
                50,
                rng.randrange(0, 100),
            ]
        )

    def anything(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(11 if depth < 3 else 7)
        simple: list[Callable[[], Any]] = [
            self.integer,
            self.text,
            lambda: rng.random() * 1e6,
            lambda: rng.choice([True, False, None]),
            lambda: rng.randbytes(rng.randrange(0, 20)),
            lambda: 1 << rng.randrange(64, 200),  # bignums
            lambda: cbor2.CBORTag(rng.randrange(0, 300), self.integer()),
        ]
        if kind < len(simple):
            return simple[kind]()
        if kind in (7, 8):
            return [self.anything(depth + 1) for _ in range(rng.randrange(0, 6))]
        return {self.text(): self.anything(depth + 1) for _ in range(rng.randrange(0, 6))}

    def value_of(self, hint: Any, depth: int = 0) -> Any:
        """A random value of type ``hint`` (records as arrays, as on the wire)."""
        rng = self.rng
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            return self.value_of(rng.choice(args), depth)
        if hint is type(None):
            return None
        if origin is list:
            return [self.value_of(args[0], depth + 1) for _ in range(rng.randrange(0, 4))]
        if origin is dict:
            return {
                self.value_of(args[0], depth + 1): self.value_of(args[1], depth + 1)
                for _ in range(rng.randrange(0, 4))
            }
        if hint is int:
            return self.integer()
        if hint is str:
            return self.text()
        if hint is bytes:  # argv, command lines, paths: any bytes, rarely valid UTF-8
            return rng.randbytes(rng.randrange(0, 24))
        if hint is bool:
            return rng.random() < 0.5
        if hint is float:
            return rng.random() * 100
        if hasattr(hint, "__dataclass_fields__") and depth < 3:
            hints = typing.get_type_hints(hint)
            return [self.value_of(hints[f.name], depth + 1) for f in fields(hint)]
        return None

    def request(self, well_typed: bool) -> dict[str, Any]:
        rng = self.rng
        op = rng.choice(sorted(MESSAGES))
        cls = MESSAGES[op]
        hints = typing.get_type_hints(cls)
        wire: dict[str, Any] = {"op": op}
        for f in fields(cls):
            if rng.random() < 0.8:
                wire[f.name] = self.value_of(hints[f.name]) if well_typed else self.anything()
        if op == "enqueue" and rng.random() < 0.5:
            wire["pid"] = os.getpid()  # a request that gets as far as the queue
        if not well_typed and rng.random() < 0.2:
            wire[self.text()] = self.anything()
        return wire

    # -------------------------------------------------------- frames

    def frame(self) -> bytes:
        rng = self.rng
        kind = rng.randrange(7)
        if kind == 0:
            self.counts["garbage"] += 1
            body = rng.randbytes(rng.randrange(0, 200))
        elif kind == 1:
            self.counts["random-cbor"] += 1
            body = cbor2.dumps(self.anything())
        elif kind == 2:
            self.counts["wrong-types"] += 1
            body = cbor2.dumps(self.request(well_typed=False))
        elif kind in (3, 4):
            self.counts["random-request"] += 1
            body = cbor2.dumps(self.request(well_typed=True))
        elif kind == 5:
            self.counts["huge-length"] += 1
            length = rng.choice([MAX_FRAME, MAX_FRAME + 1, (1 << 32) - 1, rng.randrange(1 << 32)])
            return struct.pack(">I", length) + rng.randbytes(rng.randrange(0, 64))
        else:
            self.counts["short-length"] += 1
            body = cbor2.dumps(self.request(well_typed=True))
            return struct.pack(">I", max(0, len(body) - rng.randrange(1, 8))) + body
        return struct.pack(">I", len(body)) + body

    # -------------------------------------------------------- patterns

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        sock.settimeout(REPLY_WAIT)
        return sock

    def drain(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass

    def one_frame(self) -> None:
        with self.connect() as sock:
            with contextlib.suppress(OSError):
                sock.sendall(self.frame())
            self.drain(sock)

    def pipelined(self) -> None:
        self.counts["pipelined"] += 1
        with self.connect() as sock:
            data = b"".join(self.frame() for _ in range(self.rng.randrange(2, 8)))
            with contextlib.suppress(OSError):
                sock.sendall(data)
            self.drain(sock)

    def truncated(self) -> None:
        self.counts["truncated"] += 1
        data = self.frame()
        with self.connect() as sock:
            with contextlib.suppress(OSError):
                sock.sendall(data[: self.rng.randrange(0, len(data))])
            if self.rng.random() < 0.5:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)  # half-open: we wait for its answer
                self.drain(sock)

    def storm(self) -> None:
        self.counts["storm"] += 1
        socks = []
        for _ in range(self.rng.randrange(10, 60)):
            try:
                socks.append(self.connect())
            except OSError:
                self.counts["storm-connect-failed"] += 1
                break
        for sock in socks:
            if self.rng.random() < 0.3:
                with contextlib.suppress(OSError):
                    sock.sendall(self.frame()[:3])
            sock.close()

    def hold(self) -> None:
        """Connections left open (silent or half-written), closed later or never."""
        self.counts["held"] += 1
        sock = self.connect()
        if self.rng.random() < 0.5:
            with contextlib.suppress(OSError):
                sock.sendall(self.frame()[:2])
        self.held.append(sock)
        while len(self.held) > 30:
            self.held.popleft().close()

    def slow_writer(self) -> None:
        self.counts["slow"] += 1
        if len(self.slow) < 10:
            sock = self.connect()
            sock.setblocking(False)
            self.slow.append((sock, self.frame()))

    def advance_slow(self) -> None:
        """Each slow writer sends one more byte."""
        still = []
        for sock, rest in self.slow:
            try:
                sock.send(rest[:1])
            except OSError:
                sock.close()
                continue
            if len(rest) > 1:
                still.append((sock, rest[1:]))
            else:
                sock.close()
        self.slow = still

    def with_descriptors(self) -> None:
        self.counts["descriptors"] += 1
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            with self.connect() as sock:
                fds = array.array("i", [null] * self.rng.randrange(1, 30))
                with contextlib.suppress(OSError):
                    sock.sendmsg(
                        [self.frame()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())]
                    )
                self.drain(sock)
        finally:
            os.close(null)

    def big_listing(self) -> None:
        """Own queue entries with commands near the frame limit, then a listing of them."""
        self.counts["big-listing"] += 1
        with self.connect() as sock:
            for _ in range(self.rng.randrange(1, 4)):
                size = self.rng.randrange(1000, MAX_FRAME - 1000)
                request = Enqueue(pid=os.getpid(), command=[b"y" * size])
                with contextlib.suppress(OSError):
                    sock.sendall(encode_message(request))
            listing = ListProcesses() if self.rng.random() < 0.5 else ListQueue()
            with contextlib.suppress(OSError):
                sock.sendall(encode_message(listing))
            self.drain(sock)

    def alive(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(ALIVE_WAIT)
            sock.connect(self.path)
            sock.sendall(encode_message(GetStatus()))
            header = sock.recv(4, socket.MSG_WAITALL)
            (length,) = struct.unpack(">I", header)
            return isinstance(decode_message(sock.recv(length, socket.MSG_WAITALL)), Status)
        except (OSError, struct.error):
            return False
        finally:
            sock.close()

    def run(self, seconds: float, actions: int) -> int:
        patterns = [
            (self.one_frame, 10),
            (self.pipelined, 2),
            (self.truncated, 2),
            (self.storm, 1),
            (self.hold, 1),
            (self.slow_writer, 1),
            (self.with_descriptors, 1),
            (self.big_listing, 1),
        ]
        choices = [p for p, weight in patterns for _ in range(weight)]
        last: deque[str] = deque(maxlen=10)
        deadline = time.monotonic() + seconds
        done = 0
        while done < actions and time.monotonic() < deadline:
            action = self.rng.choice(choices)
            last.append(action.__name__)
            try:
                action()
            except OSError as e:
                self.counts[f"client-{type(e).__name__}"] += 1
            self.advance_slow()
            done += 1
            if done % 50 == 0 and not self.alive():
                print(f"the agent stopped answering after {done} actions: {list(last)}")
                return 1
        for sock in self.held:
            sock.close()
        for sock, _ in self.slow:
            sock.close()
        if not self.alive():
            print(f"the agent stopped answering at the end: {list(last)}")
            return 1
        print(f"actions {done}", " ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))
        return 0


def main() -> None:
    path, seed, seconds, actions = sys.argv[1:]
    sys.exit(Fuzzer(path, int(seed)).run(float(seconds), int(actions)))


if __name__ == "__main__":
    main()
