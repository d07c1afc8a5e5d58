"""The cluster layer: real agents on loopback addresses, talking over TCP.

Nodes are 127.0.0.1, 127.0.0.2, 127.0.0.3 (all on Linux's loopback), each
agent with its own run directory and a real secret file.  What an agent sees
is read through its control socket (ListNodes) or its log, with deadlines.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2
import pytest
import trio
from agent_fixtures import Agent, cleanup, make_agent, wait_until
from loopback import free_port

from mosix.agent_client import try_connect
from mosix.agent_paths import AgentPaths
from mosix.home_agent import node_facts
from mosix.protocol import (
    HEADER,
    ListNodes,
    LoadVector,
    NodeLoad,
    Nodes,
    PeerHello,
    Refused,
    decode_message,
    encode_message,
)
from mosix.remote_agent.auth import authenticate_caller_side
from mosix.remote_agent.nodemap import Node
from mosix.remote_agent.stream import PeerStream

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


# ------------------------------------------------------------ load vectors


def test_three_agents_see_each_others_load_vectors(cluster: LoopbackCluster) -> None:
    agents = {n: cluster.node(n) for n in (1, 2, 3)}
    for n, agent in agents.items():
        others = [m for m in agents if m != n]
        wait_until(lambda a=agent, o=others: all(sees(a, m) for m in o), what=f"node {n}'s peers")
    total_mb = node_facts.memory_mb()[0]
    for agent in agents.values():
        seen = nodes_seen(agent)
        assert sorted(seen) == [1, 2, 3]
        for number, node in seen.items():
            assert node.alive
            assert node.address == f"127.0.0.{number}"
            assert node.cpus == len(os.sched_getaffinity(0))
            assert node.speed == SPEEDS[number]
            assert node.total_mb == total_mb and 0 < node.free_mb <= total_mb
            assert node.load >= 0 and node.procs == 0
            assert node.age is not None and node.age <= DEAD_AFTER
        assert (seen[3].name, seen[3].partition) == ("third", 2)
        assert (seen[1].name, seen[1].partition) == ("", 1)
    rstatus = agents[1].run("mosctl", "rstatus")
    assert rstatus.returncode == 0, rstatus.stderr
    rows = [line.split() for line in rstatus.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("1", "127.0.0.1", "up"),
        ("2", "127.0.0.2", "up"),
        ("3", "127.0.0.3", "up"),
    ]


def test_a_stopped_node_goes_down_and_comes_back(cluster: LoopbackCluster) -> None:
    one, two = cluster.node(1), cluster.node(2)
    wait_until(lambda: sees(one, 2) and sees(two, 1), what="nodes 1 and 2 to meet")
    two.stop()
    wait_until(lambda: sees(one, 2, alive=False), what="node 2 to count as down")
    wait_until(lambda: logged(one, "cluster: node 2 (127.0.0.2) is down"), what="the log")
    two.start()  # node 1 reconnects by itself
    wait_until(lambda: sees(one, 2) and sees(two, 1), what="node 2 to be back")


def test_a_node_never_started_is_down_and_the_others_carry_on(cluster: LoopbackCluster) -> None:
    one = cluster.node(1)
    wait_until(
        lambda: logged(one, "cannot send load reports: node 2 (127.0.0.2)"),
        what="node 1 to try node 2",
    )
    seen = nodes_seen(one)
    assert seen[1].alive and not seen[2].alive and seen[2].age is None
    assert one.run("mosctl", "status").returncode == 0  # the agent is not held up


def test_mosctl_rstatus_without_a_cluster(agent: Agent) -> None:
    result = agent.run("mosctl", "rstatus")
    assert result.returncode == 0
    assert "not part of a cluster" in result.stdout


# ---------------------------------------------------------- refusals


def test_a_peer_with_the_wrong_secret_is_refused_and_logged(cluster: LoopbackCluster) -> None:
    wrong = write_secret(cluster.base / "wrong.secret", "not the secret\n")
    one = cluster.node(1)
    two = cluster.node(2, secret=wrong)
    for agent, other in ((one, 2), (two, 1)):
        wait_until(
            lambda a=agent, o=other: logged(
                a, f"refused connection from 127.0.0.{o}:", f"wrong cluster secret (as node {o})"
            ),
            what=f"the refusal of node {other}",
        )
    assert not sees(one, 2) and not sees(two, 1)


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


def hello(node: int) -> bytes:
    return encode_message(PeerHello(node=node, to_node=1, nonce="ab" * 32))


@pytest.mark.parametrize(
    ("source", "frame", "error"),
    [
        ("127.0.0.9", hello(2), "not in the node map"),
        ("127.0.0.2", hello(3), "claims to be node 3, but its address is node 2's"),
        ("127.0.0.2", struct.pack(">I", 5) + b"\xff" * 5, "bad greeting: not CBOR"),
        ("127.0.0.2", struct.pack(">I", 1 << 30), "bad greeting: frame of 1073741824 bytes"),
        ("127.0.0.2", struct.pack(">I", 4097), "bad greeting: frame of 4097 bytes is larger than"),
        ("127.0.0.2", struct.pack(">I", 1) + b"\x01", "bad greeting: a message must be a map"),
        (
            "127.0.0.2",
            encode_message(ListNodes()),
            "bad greeting: expected peer-hello, got list-nodes",
        ),
        (
            "127.0.0.2",
            encode_message(PeerHello(node=2, to_node=1, nonce="no")),
            "bad greeting: malformed nonce",
        ),
        (
            "127.0.0.2",
            encode_message(PeerHello(node=2, to_node=3, nonce="ab" * 32)),
            "wants node 3; this is node 1",
        ),
        (
            "127.0.0.2",
            raw_frame(cbor2.dumps({"op": "peer-hello", "node": "two"})),
            "bad greeting: peer-hello.node: expected an integer",
        ),
    ],
)
def test_bad_peers_are_refused_logged_and_the_agent_lives(
    cluster: LoopbackCluster, source: str, frame: bytes, error: str
) -> None:
    one = cluster.node(1)
    with raw_peer(cluster.port, source) as sock:
        where = f"{source}:{sock.getsockname()[1]}"
        sock.sendall(frame)
        reply = read_frame(sock)
        assert isinstance(reply, Refused) and reply.error.startswith(error), reply
        assert closed(sock)
    wait_until(lambda: logged(one, f"refused connection from {where}: {error}"), what="the log")
    # the agent still serves its own socket and the cluster port
    assert one.run("mosctl", "status").returncode == 0
    assert genuine_peer_is_accepted(cluster, 2)


def test_a_silent_peer_is_refused_after_the_deadline(cluster: LoopbackCluster) -> None:
    one = cluster.node(1)
    with raw_peer(cluster.port, "127.0.0.2") as sock:
        where = f"127.0.0.2:{sock.getsockname()[1]}"
        sock.sendall(struct.pack(">I", 100) + b"half a frame")
        reply = read_frame(sock)  # the agent's refusal is the event we wait for
        assert isinstance(reply, Refused)
        assert reply.error == "did not authenticate within 5 s"
    assert logged(one, f"refused connection from {where}: did not authenticate within 5 s")


def genuine_peer_is_accepted(cluster: LoopbackCluster, number: int) -> bool:
    """Authenticate as node ``number`` from its address, send one load vector, and
    check that node 1 lists it as alive."""

    async def call() -> None:
        sock = trio.socket.socket()
        await sock.bind((f"127.0.0.{number}", 0))
        await sock.connect(("127.0.0.1", cluster.port))
        stream = PeerStream(trio.SocketStream(sock))
        secret = cluster.secret.read_bytes().strip()
        await authenticate_caller_side(stream, secret, number, Node(1, "127.0.0.1"))
        await stream.send(LoadVector(node=number, cpus=64, speed=3.0))
        await stream.aclose()

    trio.run(call)
    wait_until(lambda: nodes_seen(cluster.agents[1])[number].cpus == 64, what="our load vector")
    return True


# ------------------------------------------------------ load measurement


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
def test_load_counts_runnable_tasks_of_this_network_namespace() -> None:
    """In a network namespace of its own (a node of the test cluster), the load is
    that namespace's runnable tasks: its two busy loops, not the three outside."""
    program = (
        "import subprocess\n"
        "from mosix.remote_agent.load_vectors import runnable_here\n"
        "busy = [subprocess.Popen(['sh', '-c', 'while :; do :; done']) for _ in range(2)]\n"
        "try:\n"
        "    print(*[runnable_here() for _ in range(50)])\n"
        "finally:\n"
        "    for p in busy:\n"
        "        p.kill()\n"
    )
    outside = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(3)]
    try:
        result = subprocess.run(
            ["unshare", "--net", sys.executable, "-P", "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        for proc in outside:
            proc.kill()
            proc.wait()
    assert result.returncode == 0, result.stderr
    samples = [int(x) for x in result.stdout.split()]
    assert max(samples) == 2, samples  # a busy loop may be caught between two states
