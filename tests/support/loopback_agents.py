"""Real agents on loopback addresses, talking over TCP (the cluster layer's tests).

Nodes are 127.0.0.1, 127.0.0.2, 127.0.0.3 (all on Linux's loopback), each
agent with its own run directory and a real secret file; 127.0.0.9 is an
address no map names.  What an agent sees is read through its control socket
(ListNodes) or its log, with deadlines.  Raw sockets play peers that break
the protocol.  A test that uses the ``cluster`` fixture is marked ``cluster`` at
collection.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from mosix.agent_client import try_connect
from mosix.agent_paths import AgentPaths
from mosix.cluster.auth import authenticate_caller_side
from mosix.cluster.nodemap import Node
from mosix.cluster.stream import PeerStream
from mosix.protocol import (
    HEADER,
    ListNodes,
    LoadVector,
    NodeLoad,
    Nodes,
    PeerChallenge,
    PeerProof,
    decode_message,
    encode_message,
)
from support.agents import Agent, cleanup, make_agent
from support.loopback import free_port
from support.waiting import wait_until

INTERVAL = 0.2
DEAD_AFTER = 1.5
SPEEDS = {1: 1.0, 2: 2.5, 3: 0.5}


@dataclass
class LoopbackCluster:
    base: Path
    port: int
    secret: Path
    agents: dict[int, Agent]

    def node(self, number: int, secret: Path | None = None, start: bool = True) -> Agent:
        """Agent ``number`` of a 3-node map (node 3 from an explicit, named entry)."""
        home = self.base / f"node{number}"
        home.mkdir(exist_ok=True)
        agent = make_agent(home)
        with agent.config.open("a") as f:
            f.write(
                f"""
[node]
number = {number}
name = "n{number}"
speed = {SPEEDS[number]}
[cluster]
secret_file = "{secret or self.secret}"
port = {self.port}
load_interval = {INTERVAL}
dead_after = {DEAD_AFTER}
map = '''
1 127.0.0.1 2  # nodes 1 and 2
'''
[[cluster.node]]
number = 3
address = "127.0.0.3"
name = "third"
partition = 2
"""
            )
        self.agents[number] = agent
        if start:
            agent.start()
        return agent


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that uses the loopback agents (``-m "not cluster"``)."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def cluster(agent_base: Path) -> Iterator[LoopbackCluster]:
    c = LoopbackCluster(
        agent_base, free_port(), write_secret(agent_base / "cluster.secret", "s3cret\n"), {}
    )
    yield c
    for agent in c.agents.values():
        cleanup(agent)


def nodes_seen(agent: Agent) -> dict[int, NodeLoad]:
    client = try_connect(AgentPaths(agent.run_dir))
    assert client is not None, "the agent does not answer"
    with client:
        return {n.number: n for n in client.request(ListNodes(), Nodes).nodes}


def sees(agent: Agent, number: int, alive: bool = True) -> bool:
    return nodes_seen(agent)[number].alive is alive


def log_of(agent: Agent) -> str:
    path = agent.run_dir.parent / "agent.stderr"
    return path.read_text() if path.exists() else ""


def logged(agent: Agent, *parts: str) -> bool:
    return any(all(p in line for p in parts) for line in log_of(agent).splitlines())


def raw_peer(port: int, source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.settimeout(30)
    return sock


def read_frame(sock: socket.socket) -> object:
    header = sock.recv(HEADER.size, socket.MSG_WAITALL)
    if not header:
        return None
    (length,) = HEADER.unpack(header)
    return decode_message(sock.recv(length, socket.MSG_WAITALL))


def closed(sock: socket.socket) -> bool:
    """The other side closed (a reset when it did not read all we sent)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def raw_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def outsider_answers(sock: socket.socket, frame: bytes) -> list[object]:
    """What node 1 answers an outsider who sends ``frame`` and, if challenged, a
    proof made without the secret: its messages (the challenge's nonce blanked)
    up to the end of the connection."""
    sock.sendall(frame)
    answers: list[object] = []
    while (msg := read_frame(sock)) is not None:
        if isinstance(msg, PeerChallenge):
            assert len(msg.nonce) == 64
            msg = PeerChallenge(node=msg.node)
            sock.sendall(encode_message(PeerProof(proof="00" * 32)))
        answers.append(msg)
    return answers


async def open_as(cluster: LoopbackCluster, number: int, source: str = "") -> PeerStream:
    """An authenticated stream to node 1 as node ``number`` (the project's own
    caller side), from its address or ``source``."""
    sock = trio.socket.socket()
    await sock.bind((source or f"127.0.0.{number}", 0))
    await sock.connect(("127.0.0.1", cluster.port))
    stream = PeerStream(trio.SocketStream(sock))
    secret = cluster.secret.read_bytes().strip()
    await authenticate_caller_side(stream, secret, number, Node(1, "127.0.0.1"))
    return stream


def genuine_peer_is_accepted(cluster: LoopbackCluster, number: int, cpus: int = 64) -> bool:
    """Authenticate as node ``number`` from its address, send one load vector, and
    check that node 1 lists it as alive."""

    async def call() -> None:
        stream = await open_as(cluster, number)
        await stream.send(LoadVector(node=number, cpus=cpus, speed=3.0))
        await stream.aclose()

    trio.run(call)
    wait_until(lambda: nodes_seen(cluster.agents[1])[number].cpus == cpus, what="our load vector")
    return True
