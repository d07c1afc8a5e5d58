"""The Cluster API that other parts of the agent use, with real TCP on loopback:
handlers for inbound conversations, open(), detaching the socket, load vectors."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
from support.loopback import free_port

from mosix.cluster.nodemap import Node, NodeMap
from mosix.cluster.peers import Cluster
from mosix.cluster.settings import ClusterConfig
from mosix.cluster.stream import FrameRejected, PeerStream, PeerUnavailable
from mosix.protocol import HEADER, Done, GetStatus, LoadVector, Refused, Shutdown

SECRET = b"a shared secret"


def make_clusters(port: int, count: int = 2, secret: bytes = SECRET) -> list[Cluster]:
    """Nodes 1..count of a 3-node map (node 3 never runs unless count is 3)."""
    nodes = NodeMap.parse("1 127.0.0.1 3")
    return [
        Cluster(ClusterConfig(n, nodes, secret, port, 0.1, 1.0), speed=float(n))
        for n in range(1, count + 1)
    ]


def run_clusters(clusters: list[Cluster], body: Callable[[list[Cluster]], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for cluster in clusters:
                    await nursery.start(cluster.run)
                await body(clusters)
                nursery.cancel_scope.cancel()

    trio.run(main)


async def until(condition: Callable[[], bool], cluster: Cluster) -> None:
    while not condition():
        await cluster.wait_for_change()


def test_a_handler_owns_the_conversation_and_can_detach_the_socket() -> None:
    one, two = make_clusters(free_port())
    seen: list[tuple[str, int]] = []
    server_fd: list[int] = []

    async def handler(stream: PeerStream, msg: GetStatus, peer: Node) -> None:
        seen.append((msg.OP, peer.number))
        await stream.send(Done(count=peer.number))
        again = await stream.receive()  # the conversation goes on
        seen.append((again.OP, peer.number))
        fd = stream.detach_fd()
        server_fd.append(fd)
        # a (sealed) frame and raw bytes in one write: the receiver must not read past the frame
        os.write(fd, stream.frame(Done(count=99)) + b"raw bytes")
        os.close(fd)

    two.on(GetStatus, handler)

    async def body(clusters: list[Cluster]) -> None:
        stream = await one.open(2)
        assert stream.peer == Node(2, "127.0.0.2")
        await stream.send(GetStatus())
        assert await stream.receive() == Done(count=1)
        await stream.send(Shutdown())
        assert await stream.receive() == Done(count=99)
        fd = stream.detach_fd()
        await stream.aclose()  # does nothing now: the fd is ours
        try:
            assert os.get_blocking(fd)
            with socket.socket(fileno=os.dup(fd)) as view:
                assert view.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert view.getsockname()[0] == "127.0.0.1"  # bound to our own address
            data = b""
            while len(data) < len(b"raw bytes"):
                chunk = await trio.to_thread.run_sync(os.read, fd, 100)
                assert chunk
                data += chunk
            assert data == b"raw bytes"
        finally:
            os.close(fd)

    run_clusters([one, two], body)
    assert seen == [("get-status", 1), ("shutdown", 1)]
    assert len(server_fd) == 1


def test_a_frame_reflected_back_to_its_sender_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each direction has its own key: node 2's own frame, sent back to it, fails."""
    one, two = make_clusters(free_port())
    outcome: list[str] = []

    async def handler(stream: PeerStream, msg: GetStatus, peer: Node) -> None:
        await stream.send(Done(count=7))
        try:
            outcome.append((await stream.receive()).OP)
        except FrameRejected as e:
            outcome.append(str(e))

    two.on(GetStatus, handler)

    async def body(clusters: list[Cluster]) -> None:
        stream = await one.open(2)
        await stream.send(GetStatus())
        header = await receive_exactly(stream, HEADER.size)
        (length,) = HEADER.unpack(header)
        frame = header + await receive_exactly(stream, length)  # node 2's sealed Done
        await stream.stream.send_all(frame)
        assert await stream.stream.receive_some(1) == b""  # node 2 ended the connection
        await stream.aclose()

    with caplog.at_level(logging.INFO, logger="mosixd"):
        run_clusters([one, two], body)
    assert outcome == ["node 1 (127.0.0.1): a frame failed its authentication"]
    assert any(
        r.getMessage()
        == "cluster: node 1 (127.0.0.1): a frame failed its authentication (forged or altered);"
        " connection ended"
        for r in caplog.records
    )


async def receive_exactly(stream: PeerStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.stream.receive_some(size - len(data))
        assert chunk
        data += chunk
    return data


def test_an_unhandled_first_message_is_refused() -> None:
    one, two = make_clusters(free_port())

    async def body(clusters: list[Cluster]) -> None:
        async with await one.open(2) as stream:
            await stream.send(GetStatus())
            assert await stream.receive() == Refused(error="'get-status' is not handled by node 2")

    run_clusters([one, two], body)


def test_a_failing_handler_is_logged_and_the_cluster_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    one, two = make_clusters(free_port())
    calls: list[int] = []

    async def broken(stream: PeerStream, msg: GetStatus, peer: Node) -> None:
        calls.append(peer.number)
        raise RuntimeError("a bug")

    two.on(GetStatus, broken)

    async def body(clusters: list[Cluster]) -> None:
        for _ in range(2):
            async with await one.open(2) as stream:
                await stream.send(GetStatus())
                with pytest.raises(PeerUnavailable):
                    await stream.receive()  # closed by node 2 after the failure

    with caplog.at_level(logging.INFO, logger="mosixd"):
        run_clusters([one, two], body)
    assert calls == [1, 1]
    failures = [r for r in caplog.records if "the handler failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].getMessage() == "cluster: node 1 (127.0.0.1), get-status: the handler failed"


def test_open_fails_in_one_line_for_unknown_and_absent_nodes() -> None:
    port = free_port()
    (one,) = make_clusters(port, count=1)

    async def body(clusters: list[Cluster]) -> None:
        with pytest.raises(PeerUnavailable, match=r"^node 7 is not in the cluster map$"):
            await one.open(7)
        with pytest.raises(PeerUnavailable, match=r"^node 3 \(127\.0\.0\.3\): Connection refused$"):
            await one.open(3)

    run_clusters([one], body)


def test_open_with_the_wrong_secret_fails() -> None:
    port = free_port()
    (one,) = make_clusters(port, count=1, secret=b"one secret")
    _, two = make_clusters(port, count=2, secret=b"another secret")

    async def body(clusters: list[Cluster]) -> None:
        with pytest.raises(PeerUnavailable) as caught:
            await one.open(2)
        assert str(caught.value) == (
            "node 2 (127.0.0.2): refused the connection (its log says why)"
        )

    run_clusters([one, two], body)


def test_load_vectors_carry_the_local_extra_and_the_own_node_is_always_fresh() -> None:
    one, two = make_clusters(free_port())
    one.local_extra = lambda: {"stay": 1, "why": "testing", "ratio": 0.5}
    one.count_processes = lambda: 3

    async def body(clusters: list[Cluster]) -> None:
        await until(lambda: 1 in two.loads() and two.loads()[1].procs == 3, two)
        vector = two.loads()[1]
        assert isinstance(vector, LoadVector)
        assert vector.extra == {"stay": 1, "why": "testing", "ratio": 0.5}
        assert (vector.node, vector.speed, vector.cpus) == (1, 1.0, len(os.sched_getaffinity(0)))
        assert two.alive(1) and two.alive(2) and not two.alive(3)
        assert sorted(two.loads()) == [1, 2]
        assert two.loads()[2].speed == 2.0  # its own, measured locally

    run_clusters([one, two], body)


def test_a_silent_node_goes_down() -> None:
    port = free_port()
    one, two = make_clusters(port)

    async def body(clusters: list[Cluster]) -> None:
        await until(lambda: one.alive(2), one)
        async with trio.open_nursery() as inner:  # node 3 arrives, then stops
            (_, _, three) = make_clusters(port, count=3)
            await inner.start(three.run)
            await until(lambda: one.alive(3), one)
            inner.cancel_scope.cancel()
        await until(lambda: not one.alive(3), one)
        assert one.alive(2) and sorted(one.loads()) == [1, 2]

    run_clusters([one, two], body)
