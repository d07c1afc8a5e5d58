"""The cluster layer: real agents on loopback addresses, talking over TCP
(tests/loopback_agents.py)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import cbor2
import pytest
from support.agents import Agent
from support.loopback_agents import (
    DEAD_AFTER,
    SPEEDS,
    LoopbackCluster,
    genuine_peer_is_accepted,
    logged,
    nodes_seen,
    outsider_answers,
    raw_frame,
    raw_peer,
    read_frame,
    sees,
    write_secret,
)
from support.waiting import wait_until

from mosix.cluster.auth import REFUSAL
from mosix.protocol import ListNodes, PeerChallenge, PeerHello, Refused, encode_message
from mosix.sysinfo import node_facts

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


def hello(node: int) -> bytes:
    return encode_message(PeerHello(node=node, to_node=1, nonce="ab" * 32))


CHALLENGED = [PeerChallenge(node=1), Refused(error=REFUSAL)]  # a well-formed greeting's
REFUSED = [Refused(error=REFUSAL)]  # a broken greeting's


@pytest.mark.parametrize(
    ("source", "frame", "answers", "error"),
    [
        ("127.0.0.9", hello(2), CHALLENGED, "not in the node map"),
        ("127.0.0.2", hello(3), CHALLENGED, "claims to be node 3, but its address is node 2's"),
        ("127.0.0.2", hello(2), CHALLENGED, "wrong cluster secret (as node 2)"),
        ("127.0.0.2", struct.pack(">I", 5) + b"\xff" * 5, REFUSED, "bad greeting: not CBOR"),
        ("127.0.0.2", struct.pack(">I", 1 << 30), REFUSED, "bad greeting: frame of 1073741824"),
        ("127.0.0.2", struct.pack(">I", 4097), REFUSED, "bad greeting: frame of 4097 bytes is"),
        ("127.0.0.2", struct.pack(">I", 1) + b"\x01", REFUSED, "bad greeting: a message must be"),
        (
            "127.0.0.2",
            encode_message(ListNodes()),
            REFUSED,
            "bad greeting: expected peer-hello, got list-nodes",
        ),
        (
            "127.0.0.2",
            encode_message(PeerHello(node=2, to_node=1, nonce="no")),
            REFUSED,
            "bad greeting: malformed nonce",
        ),
        (
            "127.0.0.2",
            encode_message(PeerHello(node=2, to_node=3, nonce="ab" * 32)),
            CHALLENGED,
            "wants node 3; this is node 1",
        ),
        (
            "127.0.0.2",
            raw_frame(cbor2.dumps({"op": "peer-hello", "node": "two"})),
            REFUSED,
            "bad greeting: peer-hello.node: expected an integer",
        ),
    ],
)
def test_bad_peers_are_refused_alike_logged_and_the_agent_lives(
    cluster: LoopbackCluster, source: str, frame: bytes, answers: list[object], error: str
) -> None:
    """The outsider is told nothing of why (one refusal for all); the log says why."""
    one = cluster.node(1)
    with raw_peer(cluster.port, source) as sock:
        where = f"{source}:{sock.getsockname()[1]}"
        assert outsider_answers(sock, frame) == answers
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
        assert reply == Refused(error=REFUSAL)
    wait_until(
        lambda: logged(one, f"refused connection from {where}: did not authenticate within 5 s"),
        what="the log",
    )


# ------------------------------------------------------ load measurement


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")
@pytest.mark.cluster  # unshare --net: root
def test_load_counts_runnable_tasks_of_this_network_namespace() -> None:
    """In a network namespace of its own (a node of the test cluster), the load is
    that namespace's runnable tasks: its two busy loops, not the three outside."""
    program = (
        "import subprocess\n"
        "from mosix.cluster.load_vectors import runnable_here\n"
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
