"""A hostile client of the node agent, run by the tests as an unprivileged user.

hostile_client.py hold SOCKET COUNT REFUSALS
    open COUNT connections, send nothing; print the REFUSALS Refused lines
    that come back ("refused: ..."), then "holding N" and hold them all until
    stdin closes
hostile_client.py present SOCKET TICKET
    present another user's ticket (Enqueue with the caller's pid), release it,
    then ask for the node's facts on the same connection; print each answer
hostile_client.py flood SOCKET COUNT SIZE
    COUNT Enqueue requests of one pid on one connection, each with a command of
    SIZE characters; print how many were queued and the distinct refusals
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

from mosix.protocol import (
    Enqueue,
    GetStatus,
    Message,
    Refused,
    Release,
    Status,
    decode_message,
    encode_message,
)

WAIT = 20.0


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.settimeout(WAIT)
    return sock


def receive(sock: socket.socket) -> Message | None:
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return None
    (length,) = struct.unpack(">I", header)
    return decode_message(sock.recv(length, socket.MSG_WAITALL))


def answer(msg: Message | None) -> str:
    if isinstance(msg, Refused):
        return f"refused: {msg.error}"
    if isinstance(msg, Status) and msg.facts is not None:
        return f"running: {msg.facts.queue_running}"
    return "closed" if msg is None else msg.OP


def hold(path: str, count: int, refusals: int) -> None:
    socks = [connect(path) for _ in range(count)]
    heard: set[socket.socket] = set()
    deadline = time.monotonic() + WAIT
    while len(heard) < refusals and time.monotonic() < deadline:
        ready, _, _ = select.select([s for s in socks if s not in heard], [], [], 0.5)
        for sock in ready:
            heard.add(sock)
            print(answer(receive(sock)), "then", answer(receive(sock)), flush=True)
    print(f"holding {count - len(heard)}", flush=True)
    sys.stdin.read()


def present(path: str, ticket: int) -> None:
    with connect(path) as sock:
        sock.sendall(encode_message(Enqueue(pid=os.getpid(), ticket=ticket)))
        print(answer(receive(sock)), flush=True)
        sock.sendall(encode_message(Release(ticket=ticket)))
        sock.sendall(encode_message(GetStatus()))
        print(answer(receive(sock)), flush=True)


def flood(path: str, count: int, size: int) -> None:
    queued = 0
    refusals: list[str] = []
    with connect(path) as sock:
        for i in range(count):
            command = [b"x" * size, str(i).encode()]
            sock.sendall(encode_message(Enqueue(pid=os.getpid(), command=command)))
            reply = receive(sock)
            if isinstance(reply, Refused):
                if reply.error not in refusals:
                    refusals.append(reply.error)
            elif reply is not None and reply.OP == "queued":
                queued += 1
            else:
                refusals.append(answer(reply))
                break
    print(f"queued {queued}")
    for line in refusals:
        print(f"refused: {line}")


def main() -> None:
    what, path, *rest = sys.argv[1:]
    numbers = [int(x) for x in rest]
    if what == "hold":
        hold(path, *numbers)
    elif what == "present":
        present(path, *numbers)
    elif what == "flood":
        flood(path, *numbers)


if __name__ == "__main__":
    main()
