"""After the handshake every frame between agents carries a MAC; outsiders are told
nothing and cannot flood the log or the handshake slots.

Real agents on loopback addresses (tests/loopback_agents.py); the peer side is
the project's own caller code (authenticate_caller_side), after which the test
writes raw bytes on the authenticated socket: frames without a MAC, altered
or replayed ones.
"""

from __future__ import annotations

import logging

import cbor2
import pytest
import trio
from support.loopback_agents import (
    LoopbackCluster,
    genuine_peer_is_accepted,
    log_of,
    logged,
    nodes_seen,
    open_as,
    outsider_answers,
    raw_peer,
    sees,
    write_secret,
)
from support.waiting import wait_until

from mosix.cluster.refusal_log import RefusalLog
from mosix.cluster.stream import PeerStream
from mosix.protocol import HEADER, LoadVector, PeerHello, PeerProof, encode_message

ENDED = "a frame failed its authentication (forged or altered); connection ended"


async def ended(stream: PeerStream) -> bool:
    """The agent ended the connection (our read sees its end), within a deadline."""
    with trio.fail_after(10):
        try:
            return await stream.stream.receive_some(1) == b""
        except trio.BrokenResourceError:
            return True


def load(cpus: int) -> LoadVector:
    return LoadVector(node=2, cpus=cpus, speed=3.0)


def cpus_of_node_2(cluster: LoopbackCluster) -> int:
    return nodes_seen(cluster.agents[1])[2].cpus


def altered(frame: bytes, cpus: int, to: int) -> bytes:
    """``frame`` (a load vector with ``cpus`` < 24) saying ``to`` cpus instead."""
    where = frame.index(b"cpus" + bytes([cpus])) + 4
    return frame[:where] + bytes([to]) + frame[where + 1 :]


def test_a_frame_without_a_mac_after_the_handshake_is_refused(cluster: LoopbackCluster) -> None:
    one = cluster.node(1)

    async def peer() -> None:
        stream = await open_as(cluster, 2)
        await stream.send(load(11))  # genuine: taken
        await trio.to_thread.run_sync(lambda: wait_until(lambda: cpus_of_node_2(cluster) == 11))
        await stream.stream.send_all(encode_message(load(666)))  # injected, no MAC
        assert await ended(stream)
        await stream.aclose()

    trio.run(peer)
    wait_until(lambda: logged(one, "cluster: node 2 (127.0.0.2): ", ENDED), what="the log")
    assert cpus_of_node_2(cluster) == 11
    assert genuine_peer_is_accepted(cluster, 2, cpus=42)  # the agent goes on


@pytest.mark.parametrize("where", ["payload", "tag"])
def test_an_altered_frame_is_refused(cluster: LoopbackCluster, where: str) -> None:
    one = cluster.node(1)

    async def peer() -> None:
        stream = await open_as(cluster, 2)
        frame = stream.frame(load(21))
        if where == "payload":
            frame = altered(frame, 21, 22)
        else:
            frame = frame[:-1] + bytes([frame[-1] ^ 1])
        await stream.stream.send_all(frame)
        assert await ended(stream)
        await stream.aclose()

    trio.run(peer)
    wait_until(lambda: logged(one, "cluster: node 2 (127.0.0.2): ", ENDED), what="the log")
    assert not sees(one, 2)  # neither 21 nor 22 was taken
    assert genuine_peer_is_accepted(cluster, 2, cpus=42)


def test_a_replayed_frame_is_refused(cluster: LoopbackCluster) -> None:
    one = cluster.node(1)

    async def peer() -> None:
        stream = await open_as(cluster, 2)
        frame = stream.frame(load(21))
        await stream.stream.send_all(frame)
        await trio.to_thread.run_sync(lambda: wait_until(lambda: cpus_of_node_2(cluster) == 21))
        await stream.stream.send_all(frame)  # the same bytes again
        assert await ended(stream)
        await stream.aclose()

    trio.run(peer)
    wait_until(lambda: logged(one, "cluster: node 2 (127.0.0.2): ", ENDED), what="the log")
    assert genuine_peer_is_accepted(cluster, 2, cpus=42)


def test_a_frame_from_another_connection_is_refused(cluster: LoopbackCluster) -> None:
    one = cluster.node(1)

    async def peer() -> None:
        first, second = await open_as(cluster, 2), await open_as(cluster, 2)
        await second.send(load(5))  # both now at their second frame
        await first.send(load(5))
        await trio.to_thread.run_sync(lambda: wait_until(lambda: cpus_of_node_2(cluster) == 5))
        await second.stream.send_all(first.frame(load(23)))  # good on the first only
        assert await ended(second)
        await first.aclose()
        await second.aclose()

    trio.run(peer)
    wait_until(lambda: logged(one, "cluster: node 2 (127.0.0.2): ", ENDED), what="the log")
    assert cpus_of_node_2(cluster) == 5


def test_a_malformed_message_from_a_peer_ends_its_connection_not_the_agent(
    cluster: LoopbackCluster,
) -> None:
    """A peer with the secret (a broken or newer node) sends a sealed frame whose
    message does not decode: that connection ends with one log line, and every
    receiver (load vectors, a migration's reports) sees a lost peer, never an
    exception that would end the agent."""
    one = cluster.node(1)
    wire = encode_message(load(7))
    payload = cbor2.loads(wire[HEADER.size :])
    payload["cpus"] = "seven"  # the right message, a field of the wrong type
    bad = cbor2.dumps(payload)

    async def peer() -> None:
        stream = await open_as(cluster, 2)
        assert stream._sending is not None
        await stream.stream.send_all(stream._sending.seal(HEADER.pack(len(bad)) + bad))
        assert await ended(stream)
        await stream.aclose()

    trio.run(peer)
    wait_until(
        lambda: logged(one, "cluster: node 2 (127.0.0.2): ", "malformed message"), what="the log"
    )
    assert not sees(one, 2)
    assert genuine_peer_is_accepted(cluster, 2, cpus=42)  # the agent goes on


# ---------------------------------------------------------- outsiders


def hello(node: int) -> bytes:
    return encode_message(PeerHello(node=node, to_node=1, nonce="ab" * 32))


def test_outsiders_get_the_same_refusal_whatever_is_wrong(cluster: LoopbackCluster) -> None:
    """An unknown address, a wrong node number and a wrong secret look alike from
    outside; only the log tells them apart (one line per address: three addresses)."""
    one = cluster.node(1)
    seen = {}
    for source, node in (("127.0.0.9", 2), ("127.0.0.3", 2), ("127.0.0.2", 2)):
        with raw_peer(cluster.port, source) as sock:
            seen[source, node] = outsider_answers(sock, hello(node))
    assert len({repr(answers) for answers in seen.values()}) == 1, seen
    for why in ("not in the node map", "claims to be node 2", "wrong cluster secret (as node 2)"):
        wait_until(lambda w=why: logged(one, "cluster: refused connection from ", w), what=why)


def test_a_peer_with_the_wrong_secret_learns_only_that_it_was_refused(
    cluster: LoopbackCluster,
) -> None:
    wrong = write_secret(cluster.base / "wrong.secret", "not the secret\n")
    cluster.node(1)
    two = cluster.node(2, secret=wrong)
    wait_until(
        lambda: logged(two, "cannot send load reports: node 1 (127.0.0.1): refused the connection"),
        what="node 2's attempt",
    )
    assert "wrong cluster secret" not in "".join(
        line for line in log_of(two).splitlines() if "node 1 (127.0.0.1)" in line
    )


FLOOD = 2000
HELD = 300  # more than the agent's MAX_PENDING (256)
BAD_PROOF = encode_message(PeerProof(proof="00" * 32))


async def bogus_connection(port: int, data: bytes) -> None:
    """One outsider's connection from 127.0.0.9: send ``data``, read to the end."""
    sock = trio.socket.socket()
    with sock:
        await sock.bind(("127.0.0.9", 0))
        try:
            await sock.connect(("127.0.0.1", port))
            await sock.send(data)
            while await sock.recv(4096):
                pass
        except OSError:
            pass  # closed or reset by the agent: what we came for


async def held_connections(port: int, source: str, count: int) -> list[trio.socket.SocketType]:
    """``count`` silent connections from ``source``, still open."""
    held = []
    for _ in range(count):
        sock = trio.socket.socket()
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
        held.append(sock)
    return held


def test_a_flood_of_outsiders_gives_a_few_log_lines_and_peers_are_served(
    cluster: LoopbackCluster,
) -> None:
    one, _ = cluster.node(1), cluster.node(2)
    wait_until(lambda: sees(one, 2), what="node 2")

    async def flood() -> None:
        # a user on node 2's machine can use its address: silent connections hold their
        # handshake slots (for 5 s) ...
        held = await held_connections(cluster.port, "127.0.0.2", HELD)
        try:
            # ... yet another peer still gets through meanwhile
            with trio.fail_after(20):
                await trio.to_thread.run_sync(genuine_peer_is_accepted, cluster, 3)
        finally:
            for sock in held:
                sock.close()
        limiter = trio.CapacityLimiter(64)

        async def one_bogus(data: bytes) -> None:
            async with limiter:
                await bogus_connection(cluster.port, data)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for n in range(FLOOD):
                    nursery.start_soon(one_bogus, hello(2) + BAD_PROOF if n % 2 else b"\xff" * 8)

    trio.run(flood)
    outsider_lines = [line for line in log_of(one).splitlines() if "127.0.0.9" in line]
    assert 1 <= len(outsider_lines) <= 3, outsider_lines[:10]
    assert not logged(one, "refused connection from 127.0.0.3")
    assert one.run("mosctl", "status").returncode == 0
    wait_until(lambda: sees(one, 2), what="node 2, still alive")


def test_refusals_are_summed_up_once_per_interval_per_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusals = RefusalLog(interval=60)
    with caplog.at_level(logging.INFO, logger="mosixd"):
        for port in range(5):
            refusals.refused("10.0.0.9", port, "not in the node map")
        refusals.refused("10.0.0.8", 1, "wrong cluster secret (as node 2)")
        first = [r.getMessage() for r in caplog.records]
        refusals.summarise()  # the end of an interval
        summary = [r.getMessage() for r in caplog.records][len(first) :]
        refusals.summarise()  # a quiet interval
        refusals.refused("10.0.0.9", 7, "bad greeting: not CBOR")  # a new interval, a new line
    assert first == [
        "cluster: refused connection from 10.0.0.9:0: not in the node map",
        "cluster: refused connection from 10.0.0.8:1: wrong cluster secret (as node 2)",
    ]
    assert summary == [
        "cluster: refused 4 more connections from 10.0.0.9 in the last 60 s"
        " (the last: not in the node map)"
    ]
    assert caplog.records[-1].getMessage() == (
        "cluster: refused connection from 10.0.0.9:7: bad greeting: not CBOR"
    )
