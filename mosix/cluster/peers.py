"""The cluster as one agent sees it: TCP links to the other agents, load vectors.

``Cluster.run`` listens on (this node's address, port).  Every connection,
inbound or outbound, is authenticated first (mosix.cluster.auth), and
every frame after that carries a MAC (mosix.cluster.frame_mac); an
inbound connection's first message then picks a handler registered with
``cluster.on(MessageClass, handler)``, which owns the stream from then on
(it is closed when the handler returns, unless its fd was detached).

Connections not yet authenticated are bounded: MAX_PENDING in all,
MAX_PENDING_PER_ADDRESS from one address (so a flood from one place leaves
room for the genuine peers), each for AUTH_TIMEOUT at most; more are closed
at once.  Refused connections are logged once per address per interval
(mosix.cluster.refusal_log), never once each.

Each agent sends its load vector to every other node every load_interval,
over one long-lived connection per peer (reconnected with backoff); a node
not heard from for dead_after seconds counts as down.

An isolated node (``mosctl isolate``, mosix.cluster.admin) sends no load vectors,
refuses every peer's connection after authenticating it, opens none (but to
itself: it keeps its own jobs' queue, mosix.queue), and sees no other node
alive, until ``mosctl rejoin``.

Every connection, both ways, is given up by the kernel when the peer has not
answered for lost_after seconds (stream.give_up_after: keepalive probes and
TCP_USER_TIMEOUT), so a node that dies without a word, or a network cut
longer than that, ends the connections to it, also those handed to C
programs (a migrated process's channel); a shorter cut only delays them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import trio

from mosix.cluster.admin import ADVERTISED, NodeAdmin, guests_of, says
from mosix.cluster.auth import (
    REFUSAL,
    AuthError,
    authenticate_accepter_side,
    authenticate_caller_side,
)
from mosix.cluster.load_vectors import (
    SAMPLES_PER_INTERVAL,
    LoadSamples,
    LoadTable,
    measure,
    runnable_here,
)
from mosix.cluster.nodemap import Node
from mosix.cluster.refusal_log import RefusalLog
from mosix.cluster.settings import ClusterConfig
from mosix.cluster.stream import (
    PeerClosed,
    PeerStream,
    PeerUnavailable,
    give_up_after,
    reason,
)
from mosix.protocol import LoadVector, Message, NodeLoad, ProtocolError, Refused

log = logging.getLogger("mosixd")

M = TypeVar("M", bound=Message)
Handler = Callable[[PeerStream, Any, Node], Awaitable[None]]
Extra = dict[str, int | float | str]

CONNECT_TIMEOUT = 5.0  # seconds to establish a TCP connection to a peer
FIRST_MESSAGE_TIMEOUT = 10.0  # an authenticated caller must say what it wants by then
REFUSAL_TIMEOUT = 1.0  # time given to a refused peer to take our Refused
SEND_TIMEOUT_TICKS = 4  # a load report not taken within this many intervals drops the link
IDLE_FACTOR = 3  # a load stream silent for this many dead_after periods is closed
BACKOFF_FIRST = 0.25  # seconds before the first reconnection attempt; doubles up to...
BACKOFF_MAX = 5.0
MAX_PENDING = 256  # connections still authenticating; more are closed at once
MAX_PENDING_PER_ADDRESS = 16  # of them from one address
LISTEN_BACKLOG = 128
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class ClusterError(Exception):
    """The cluster layer cannot start (one line)."""


class Cluster:
    """This agent's view of the cluster; built by the node (mosix.node.agent)."""

    def __init__(
        self,
        config: ClusterConfig,
        speed: float = 1.0,
        count_processes: Callable[[], int] = lambda: 0,
    ) -> None:
        self.config = config
        self.nodes = config.nodes
        self.me = config.me
        self.speed = speed
        self.admin = NodeAdmin()  # mosctl's settings
        self._rejoined = trio.Event()  # set and replaced by rejoin()
        self.count_processes = count_processes  # MOSIX processes running here
        self.local_extra: Callable[[], Extra] | None = None  # more for our load vector
        self.handlers: dict[type[Message], Handler] = {}
        self.table = LoadTable(config.dead_after)
        self.samples = LoadSamples()
        self.local = LoadVector(node=self.me.number, speed=speed, stamp=time.time())
        self.listener: trio.socket.SocketType | None = None
        self._tick = trio.Event()
        self._change = trio.Event()
        self._pending: dict[str, int] = {}  # address: connections authenticating
        self.refusals = RefusalLog()
        self.on(LoadVector, self._receive_loads)

    # ------------------------------------------------------------ API

    def on(self, kind: type[M], handler: Handler) -> None:
        """Inbound connections whose first message is a ``kind`` go to ``handler``:
        ``async def handler(stream: PeerStream, msg: kind, peer: Node) -> None``."""
        if kind in self.handlers:
            raise ValueError(f"a handler for {kind.OP} is already registered")
        self.handlers[kind] = handler

    def listen(self) -> None:
        """Bind the TCP listener now (Cluster.run does it if nobody did)."""
        if self.listener is not None:
            return
        plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            plain.bind((self.me.address, self.config.port))
            plain.listen(LISTEN_BACKLOG)
        except OSError as e:
            plain.close()
            raise ClusterError(
                f"cluster: cannot listen on {self.me.address}:{self.config.port}: {e.strerror}"
            ) from None
        self.listener = trio.socket.from_stdlib_socket(plain)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept peers, send our load vectors, watch the others' (until cancelled)."""
        self.listen()
        assert self.listener is not None
        try:
            await self._measure()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._accept_loop, self.listener, nursery)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._sampler)
                nursery.start_soon(self._summarise_refusals)
                for node in self.config.others():
                    nursery.start_soon(self._feed, node)
                log.info(
                    "cluster: %s listening on port %d (other nodes: %d)",
                    self.me.label(),
                    self.config.port,
                    len(self.config.others()),
                )
                task_status.started()
        finally:
            self.listener.close()
            self.listener = None

    async def open(self, node: int) -> PeerStream:
        """An authenticated connection to ``node``; PeerUnavailable (one line) if not."""
        target = self.nodes.by_number(node)
        if target is None:
            raise PeerUnavailable(f"node {node} is not in the cluster map")
        if self.config.secret is None:
            raise PeerUnavailable("no cluster secret is configured")
        if self.admin.isolated and node != self.me.number:
            raise PeerUnavailable(f"{self.me.label()} is isolated (mosctl rejoin ends that)")
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            give_up_after(sock, self.config.lost_after)
            await sock.bind((self.me.address, 0))  # peers check our source address
            with trio.fail_after(CONNECT_TIMEOUT):
                await sock.connect((target.address, self.config.port))
            stream = PeerStream(trio.SocketStream(sock))
        except trio.TooSlowError:
            sock.close()
            raise PeerUnavailable(
                f"{target.label()}: no connection within {CONNECT_TIMEOUT:g} s"
            ) from None
        except OSError as e:
            sock.close()
            raise PeerUnavailable(f"{target.label()}: {reason(e)}") from None
        except BaseException:
            sock.close()
            raise
        try:
            await authenticate_caller_side(stream, self.config.secret, self.me.number, target)
        except AuthError as e:
            await stream.aclose()
            raise PeerUnavailable(f"{target.label()}: {e}") from None
        except BaseException:
            await trio.aclose_forcefully(stream.stream)
            raise
        return stream

    def loads(self) -> dict[int, LoadVector]:
        """The vectors of the nodes heard from within dead_after, ours (fresh) included
        (isolated: ours only)."""
        found = {} if self.admin.isolated else self.table.fresh(time.monotonic())
        found[self.me.number] = self.local
        return found

    def heard_from(self) -> set[int]:
        """The nodes this agent has had a load vector from, alive or not since (isolating
        forgets them)."""
        return set(self.table.vectors)

    def alive(self, node: int) -> bool:
        if node == self.me.number:
            return True
        return not self.admin.isolated and self.table.alive(node, time.monotonic())

    def isolate(self) -> None:
        """Leave the cluster (mosctl isolate): see the module's text."""
        self.admin.isolated = True
        self.table = LoadTable(self.config.dead_after)  # others' vectors are forgotten
        self._changed()
        log.info("cluster: %s is isolated (mosctl isolate)", self.me.label())

    def rejoin(self) -> None:
        self.admin.isolated = False
        rejoined, self._rejoined = self._rejoined, trio.Event()
        rejoined.set()
        log.info("cluster: %s rejoins the cluster (mosctl rejoin)", self.me.label())

    def set_speed(self, speed: float) -> None:
        """mosctl setspeed: our next load vector carries it."""
        self.speed = self.admin.speed = speed
        self.local = replace(self.local, speed=speed)

    async def wait_for_change(self) -> None:
        """Return after the next load vector arrives or a node goes down."""
        await self._change.wait()

    def listing(self) -> list[NodeLoad]:
        """Every node of the map with its last load vector (mosctl rstatus)."""
        now = time.monotonic()
        out = []
        for node in self.nodes:
            mine = node.number == self.me.number
            vector = self.local if mine else self.table.vectors.get(node.number)
            out.append(
                NodeLoad(
                    number=node.number,
                    address=node.address,
                    name=node.name or "",
                    partition=node.partition,
                    alive=self.alive(node.number),
                    cpus=vector.cpus if vector else 0,
                    speed=vector.speed if vector else 0.0,
                    load=vector.load if vector else 0.0,
                    free_mb=vector.free_mb if vector else 0,
                    total_mb=vector.total_mb if vector else 0,
                    procs=vector.procs if vector else 0,
                    age=0.0 if mine else self.table.age(node.number, now),
                    settings=[s for s in ADVERTISED if says(vector, s)],
                    guests=guests_of(vector),
                )
            )
        return out

    # ------------------------------------------------------- inbound

    async def _accept_loop(self, listener: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        while True:
            try:
                sock, (address, port, *_) = await listener.accept()
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cluster: cannot accept connections: %s", e.strerror)
                    await trio.sleep(0.1)  # until something is freed
                continue
            if self._pending.get(address, 0) >= MAX_PENDING_PER_ADDRESS:
                sock.close()
                self.refusals.refused(address, port, "too many connections authenticating from it")
                continue
            if sum(self._pending.values()) >= MAX_PENDING:
                sock.close()
                self.refusals.refused(address, port, "too many connections authenticating")
                continue
            self._pending[address] = self._pending.get(address, 0) + 1
            nursery.start_soon(self._serve_connection, sock, address)

    async def _serve_connection(self, sock: trio.socket.SocketType, address: str) -> None:
        try:
            peer = await self._authenticate(sock)
        finally:
            self._pending[address] -= 1
            if not self._pending[address]:
                del self._pending[address]
        if peer is not None:
            await self._serve_peer(*peer)

    async def _authenticate(self, sock: trio.socket.SocketType) -> tuple[PeerStream, Node] | None:
        """The stream and the node, once the connection is authenticated; None if it
        was refused (and closed)."""
        try:
            give_up_after(sock, self.config.lost_after)
            stream = PeerStream(trio.SocketStream(sock))
        except OSError:  # gone before we looked at it
            sock.close()
            return None
        try:
            peer = await authenticate_accepter_side(
                stream, self.config.secret, self.me.number, self.nodes
            )
        except AuthError as e:
            self.refusals.refused(stream.address[0], stream.address[1], str(e))
            await self._refuse(stream, REFUSAL)
            return None
        return stream, peer

    async def _serve_peer(self, stream: PeerStream, peer: Node) -> None:
        if self.admin.isolated and peer.number != self.me.number:
            await self._refuse(stream, f"{self.me.label()} is isolated")
            return
        try:
            with trio.fail_after(FIRST_MESSAGE_TIMEOUT):
                msg = await stream.receive()
        except PeerClosed:
            await stream.aclose()
            return
        except (PeerUnavailable, ProtocolError, trio.TooSlowError) as e:
            log.warning("cluster: %s: no request: %s", peer.label(), describe_error(e))
            await self._refuse(stream, "no request")
            return
        handler = self.handlers.get(type(msg))
        if handler is None:
            log.warning("cluster: %s sent '%s', which nothing here handles", peer.label(), msg.OP)
            await self._refuse(stream, f"'{msg.OP}' is not handled by node {self.me.number}")
            return
        try:
            await handler(stream, msg, peer)
        except (PeerUnavailable, ProtocolError, trio.TooSlowError) as e:
            log.warning("cluster: %s, %s: %s", peer.label(), msg.OP, describe_error(e))
        except Exception:
            log.exception("cluster: %s, %s: the handler failed", peer.label(), msg.OP)
        finally:
            await trio.aclose_forcefully(stream)

    async def _summarise_refusals(self) -> None:
        while True:
            await trio.sleep(self.refusals.interval)  # a period, not a wait for an event
            self.refusals.summarise()

    async def _refuse(self, stream: PeerStream, why: str) -> None:
        with trio.move_on_after(REFUSAL_TIMEOUT):
            with contextlib.suppress(PeerUnavailable):
                await stream.send(Refused(error=why))
        await trio.aclose_forcefully(stream)

    # ---------------------------------------------------- load vectors

    async def _measure(self) -> None:
        extra: Extra = dict(self.admin.advertised())
        if self.local_extra is not None:
            try:
                extra.update(self.local_extra())
            except Exception:
                log.exception("cluster: local_extra failed")
        procs = self.count_processes()
        self.local = await trio.to_thread.run_sync(
            measure, self.me.number, self.speed, procs, extra, self.samples.mean()
        )

    async def _sampler(self) -> None:
        """The runnable count, several times per load interval (see LoadSamples)."""
        period = self.config.load_interval / SAMPLES_PER_INTERVAL
        while True:
            self.samples.add(await trio.to_thread.run_sync(runnable_here))
            await trio.sleep(period)

    async def _ticker(self) -> None:
        """Every load_interval: measure our vector, wake the feeders, expire silent nodes."""
        interval = self.config.load_interval
        deadline = trio.current_time()
        while True:
            deadline += interval
            await trio.sleep_until(deadline)
            deadline = max(deadline, trio.current_time() - interval)  # no bursts after a stall
            await self._measure()
            tick, self._tick = self._tick, trio.Event()
            tick.set()
            gone = self.table.expire(time.monotonic())
            for number in gone:
                node = self.nodes.by_number(number)
                label = node.label() if node else f"node {number}"
                log.info(
                    "cluster: %s is down (no load report for %g s)", label, self.table.dead_after
                )
            if gone:
                self._changed()

    def _changed(self) -> None:
        change, self._change = self._change, trio.Event()
        change.set()

    async def _feed(self, node: Node) -> None:
        """Send our load vector to ``node`` every tick over one connection, reconnecting."""
        backoff = BACKOFF_FIRST
        trouble: str | None = None  # logged once until the link works again
        send_timeout = SEND_TIMEOUT_TICKS * self.config.load_interval
        while True:
            if self.admin.isolated:
                await self._rejoined.wait()
            try:
                stream = await self.open(node.number)
                async with stream:
                    while not self.admin.isolated:
                        with trio.fail_after(send_timeout):
                            await stream.send(self.local)
                        if trouble is not None:
                            log.info("cluster: sending load reports to %s again", node.label())
                            trouble = None
                        backoff = BACKOFF_FIRST
                        await self._tick.wait()
            except (PeerUnavailable, trio.TooSlowError) as e:
                why = describe_error(e)
                if trouble is None:
                    log.info("cluster: cannot send load reports: %s", why)
                trouble = why
            await trio.sleep(backoff)  # a retry policy: the peer gives no event to wait for
            backoff = min(backoff * 2, BACKOFF_MAX, self.config.dead_after / 2)

    async def _receive_loads(self, stream: PeerStream, first: LoadVector, peer: Node) -> None:
        """A peer's stream of load vectors (the handler of LoadVector)."""
        idle = IDLE_FACTOR * self.config.dead_after
        msg: Message = first
        while True:
            if not isinstance(msg, LoadVector) or msg.node != peer.number:
                log.warning("cluster: %s sent '%s' among its load reports", peer.label(), msg.OP)
                return
            if self.admin.isolated:
                return
            if self.table.record(msg, time.monotonic()):
                log.info("cluster: %s is up", peer.label())
            self._changed()
            try:
                with trio.fail_after(idle):
                    msg = await stream.receive()
            except PeerClosed:
                return


def describe_error(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return "timed out"
    return str(error)
