"""Migration, the target's side: guests, the copies of other nodes' processes.

A guest arrives in four connections from its home agent (see
mosix.home_agent.migration): the offer (kept open for the guest's life: its
reports go home on it, and home's MigrateFinish comes back on it), the image,
the channel and the direct channel, handed as raw descriptors to
``mosix-remote``, which restores the copy and then serves its forwarded calls
in C (a copy with the preload shim sends them over the direct channel itself).  mosix-remote
reports on its stdout one line per event; this module turns them into
messages for home.

An offer is refused while the node is blocked (mosctl block); mosctl expel asks
each guest's home to bring it home (the RemoteEvent "home" a copy that forks
sends too).

Leaving (home, on BringHome): mosix-remote is told to "leave" (finish the
call in flight, take no new one); then mosix-ckpt -a migrate streams the
copy's image on the BringHome connection, the copy held; home's
MigrateFinish says whether to end it ("go") or let it continue.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from mosix.arguments import PRIVATE_DIRS_MAX, UsageError, check_private_dir
from mosix.cluster.admin import NodeAdmin
from mosix.cluster.nodemap import Node
from mosix.cluster.stream import PeerStream, PeerUnavailable
from mosix.discipline import forward_filter
from mosix.native import capturer, remote_supervisor, zpipe
from mosix.native.helper_process import close_process
from mosix.native_names import CkptLine, RemoteLine
from mosix.private_limits import MAX_MB as PRIVATE_MAX_MB
from mosix.protocol import (
    BringHome,
    MigrateAccept,
    MigrateChannel,
    MigrateFinish,
    MigrateImage,
    MigrateOffer,
    MigrateResult,
    ProgramCheckpoint,
    ProgramCheckpointAnswer,
    Refused,
    RemoteEvent,
)

log = logging.getLogger("mosixd")
ARRIVAL_TIMEOUT = 30.0  # for the image and channel connections after an offer
QUIET_TIMEOUT = 60.0  # for the call in flight to finish before leaving
REFUSAL_READ_TIMEOUT = 30.0  # a refused capture: for home to say its deputy read why


@dataclass
class Guest:
    offer: MigrateOffer
    home: Node
    ctl: PeerStream
    img_fd: int = -1
    chan_fd: int = -1
    # the direct channels (the copy's shim to the deputy), by index; -1: not yet here
    direct_fds: list[int] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)
    supervisor: trio.Process | None = None
    pid: int = 0  # of the copy here
    quiet: trio.Event = field(default_factory=trio.Event)
    finish: trio.MemorySendChannel[bool] | None = None
    compressed: bool = False  # its image comes through mosix-zpipe -d

    @property
    def token(self) -> str:
        return self.offer.token


class Guests:
    """The copies running here; the handlers of the migration messages."""

    def __init__(
        self,
        free_mb: Callable[[], int],
        on_change: Callable[[], None],
        admin: NodeAdmin,
        me: Node | None = None,
    ) -> None:
        self.free_mb = free_mb
        self.on_change = on_change
        self.admin = admin  # mosctl block: offers are refused
        self.me = me  # this node as its own map says (partition, -G classes it takes)
        self.guests: dict[str, Guest] = {}

    # ------------------------------------------------------------ arrival

    async def offer(self, stream: PeerStream, msg: MigrateOffer, peer: Node) -> None:
        if (
            msg.home != peer.number
            or not msg.token
            or msg.token in self.guests
            or not private_dirs_valid(msg.private_dirs)
            or not 0 <= msg.private_home_mb <= PRIVATE_MAX_MB
            or not 0 <= msg.private_away_mb <= PRIVATE_MAX_MB
        ):
            await stream.send(Refused(error="a bad offer"))
            await stream.aclose()
            return
        refusal = self._refusal(msg, peer)
        if refusal is not None:
            await stream.send(Refused(error=refusal))
            await stream.aclose()
            return
        need = max(msg.memory_mb, msg.required_mb)
        if need > self.free_mb():
            await stream.send(Refused(error=f"not enough free memory for {need} MB"))
            await stream.aclose()
            return
        if not 1 <= msg.direct_channels <= forward_filter.DIRECT_MAX:
            await stream.send(Refused(error="a bad offer"))
            await stream.aclose()
            return
        guest = Guest(msg, peer, stream)
        guest.direct_fds = [-1] * (msg.direct_channels if msg.direct else 0)
        self.guests[msg.token] = guest
        try:
            # the image comes compressed when home asks it and zstd is here
            guest.compressed = msg.compressed and zpipe.available()
            await stream.send(MigrateAccept(token=msg.token, compressed=guest.compressed))
            with trio.fail_after(ARRIVAL_TIMEOUT):
                await guest.arrived.wait()
            log.info("process %d of %s: receiving its image", msg.pid, peer.label())
            await self._run(guest)
        except (PeerUnavailable, trio.TooSlowError) as e:
            log.warning("migration from %s: %s", peer.label(), e)
        finally:
            for fd in (guest.img_fd, guest.chan_fd, *guest.direct_fds):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.guests.pop(msg.token, None)
            self.on_change()
            log.info("process %d of %s: no copy of it here now", msg.pid, peer.label())
            with contextlib.suppress(Exception):
                await stream.aclose()

    def _refusal(self, msg: MigrateOffer, peer: Node) -> str | None:
        """Why this node takes no such process from ``peer`` (None: it may)."""
        if self.admin.block:
            return "it accepts no processes from other nodes (blocked)"
        who = remote_supervisor.identity_refusal(msg.uid)
        if who is not None:
            return who
        me = self.me
        if me is not None and peer.partition != me.partition and not me.admits(msg.grid_class):
            what = f"class {msg.grid_class}" if msg.grid_class > 0 else "process without -G"
            return f"this node takes no {what} from partition {peer.partition}"
        return None

    async def image(self, stream: PeerStream, msg: MigrateImage, peer: Node) -> None:
        self._arrive(stream, msg.token, peer, "img_fd")

    async def channel(self, stream: PeerStream, msg: MigrateChannel, peer: Node) -> None:
        if not msg.direct:
            self._arrive(stream, msg.token, peer, "chan_fd")
            return
        guest = self.guests.get(msg.token)
        if (
            guest is None
            or guest.home.number != peer.number
            or not 0 <= msg.index < len(guest.direct_fds)
            or guest.direct_fds[msg.index] >= 0
        ):
            log.warning("%s: a connection for an unknown migration", peer.label())
            return
        guest.direct_fds[msg.index] = stream.detach_fd()
        self._maybe_arrived(guest)

    def _arrive(self, stream: PeerStream, token: str, peer: Node, which: str) -> None:
        guest = self.guests.get(token)
        if guest is None or guest.home.number != peer.number or getattr(guest, which) >= 0:
            log.warning("%s: a connection for an unknown migration", peer.label())
            return
        setattr(guest, which, stream.detach_fd())
        self._maybe_arrived(guest)

    @staticmethod
    def _maybe_arrived(guest: Guest) -> None:
        directs_done = all(fd >= 0 for fd in guest.direct_fds)
        if guest.img_fd >= 0 and guest.chan_fd >= 0 and directs_done:
            guest.arrived.set()

    # ------------------------------------------------------------ life

    async def _run(self, guest: Guest) -> None:
        pump: trio.Process | None = None
        if guest.compressed:
            source, pump = await zpipe.decompressing(guest.img_fd)
            os.close(guest.img_fd)
            guest.img_fd = source
        try:
            await self._supervise(guest, pump)
        finally:
            if pump is not None and pump.returncode is None:
                zpipe.stop(pump)
                await zpipe.finished(pump)

    async def _supervise(self, guest: Guest, pump: trio.Process | None) -> None:
        proc = await remote_supervisor.Supervise(
            chan_fd=guest.chan_fd,
            img_fd=guest.img_fd,
            mode=guest.offer.mode,
            home_pid=guest.offer.pid,
            direct_fds=tuple(guest.direct_fds),
            time_here=guest.offer.time_here,
            private_dirs=tuple(guest.offer.private_dirs),
            private_home_mb=guest.offer.private_home_mb,
            private_away_mb=guest.offer.private_away_mb,
            uid=guest.offer.uid,
        ).start()
        for fd in (guest.img_fd, guest.chan_fd, *guest.direct_fds):
            if fd >= 0:
                os.close(fd)
        guest.img_fd = guest.chan_fd = -1
        guest.direct_fds = []
        guest.supervisor = proc
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._orders, guest)
                if pump is not None:
                    nursery.start_soon(self._decompressed, guest, pump)
                await self._reports(guest)
                nursery.cancel_scope.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # the supervisor only: the copy was ended or left
            await close_process(proc)

    async def _decompressed(self, guest: Guest, pump: trio.Process) -> None:
        """The image's decompressor, to its end (a damaged stream: the restorer refuses
        the image it cut short, and home hears that reason)."""
        pumped = await zpipe.finished(pump)
        name = f"process {guest.offer.pid} of {guest.home.label()}"
        if pumped.error:
            log.warning("%s: decompressing its image: %s", name, pumped.error)
        else:
            log.info(
                "%s: image decompressed: %d -> %d bytes", name, pumped.bytes_in, pumped.bytes_out
            )

    async def _reports(self, guest: Guest) -> None:
        """mosix-remote's lines, to home."""
        proc = guest.supervisor
        assert proc is not None and proc.stdout is not None
        buffer = b""
        while True:
            chunk = await proc.stdout.receive_some(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                if not await self._report(guest, *remote_supervisor.report(raw)):
                    return

    async def _report(self, guest: Guest, word: str, rest: str) -> bool:
        """One line of mosix-remote; False when the guest is over."""
        match word:
            case RemoteLine.READY:
                guest.pid = int(rest)
                self.on_change()
                log.info(
                    "process %d of %s runs here as %d",
                    guest.offer.pid,
                    guest.home.label(),
                    guest.pid,
                )
                await guest.ctl.send(MigrateResult(token=guest.token, remote_pid=guest.pid))
            case RemoteLine.FAILED:
                log.warning(
                    "process %d of %s: not restored: %s", guest.offer.pid, guest.home.label(), rest
                )
                await guest.ctl.send(MigrateResult(token=guest.token, error=rest))
                return False
            case RemoteLine.QUIET:
                guest.quiet.set()
            case RemoteLine.HOME:
                await guest.ctl.send(RemoteEvent(token=guest.token, event="home"))
            case RemoteLine.CHECKPOINT:  # the copy's own request: home serves it
                call = remote_supervisor.checkpoint_call(rest)
                if call is None:
                    log.warning("process %d: a bad checkpoint line", guest.offer.pid)
                    await self.answer(guest, -errno.EINVAL)
                else:
                    op, value, file = call
                    msg = ProgramCheckpoint(token=guest.token, call=op, value=value, file=file)
                    await guest.ctl.send(msg)
            case RemoteLine.EXIT:
                await guest.ctl.send(RemoteEvent(token=guest.token, event="exit", status=int(rest)))
                return False
            case RemoteLine.LOST:
                await guest.ctl.send(RemoteEvent(token=guest.token, event="lost"))
                return False
            case RemoteLine.LEFT:
                return False
        return True

    async def _orders(self, guest: Guest) -> None:
        """Home's messages on the offer connection; its end ends the copy."""
        try:
            while True:
                msg = await guest.ctl.receive()
                if isinstance(msg, MigrateFinish) and guest.finish is not None:
                    await guest.finish.send(msg.ok)
                elif isinstance(msg, ProgramCheckpointAnswer):
                    await self.answer(guest, msg.result)
        except PeerUnavailable:
            pass
        log.warning(
            "process %d of %s: its home is gone; ending its copy",
            guest.offer.pid,
            guest.home.label(),
        )
        await self.tell(guest, RemoteLine.KILL)

    async def tell(self, guest: Guest, order: RemoteLine) -> None:
        """Tell ``guest``'s supervisor ``order`` (nothing if it has none or is gone)."""
        if guest.supervisor is not None:
            await remote_supervisor.order(guest.supervisor, order)

    async def answer(self, guest: Guest, result: int) -> None:
        """Home's answer to the copy's checkpoint call, to its supervisor."""
        if guest.supervisor is not None:
            await remote_supervisor.answer(guest.supervisor, result)

    # ------------------------------------------------------------ leaving

    async def expel(self) -> int:
        """mosctl expel: ask every guest's home to bring it home (as a copy that forks
        does); how many were asked."""
        asked = 0
        for guest in list(self.guests.values()):
            if not guest.pid:
                continue  # still arriving
            try:
                await guest.ctl.send(RemoteEvent(token=guest.token, event="home"))
            except PeerUnavailable:
                continue
            log.info("process %d of %s: expelled", guest.offer.pid, guest.home.label())
            asked += 1
        return asked

    def count(self) -> int:
        """Guests running here."""
        return sum(1 for guest in self.guests.values() if guest.pid)

    async def bring_home(self, stream: PeerStream, msg: BringHome, peer: Node) -> None:
        guest = self.guests.get(msg.token)
        if guest is None or guest.home.number != peer.number or not guest.pid:
            await stream.send(RemoteEvent(token=msg.token, event="failed", error="no such copy"))
            await stream.aclose()
            return
        guest.quiet = trio.Event()
        await self.tell(guest, RemoteLine.LEAVE)
        try:
            with trio.fail_after(QUIET_TIMEOUT):
                await guest.quiet.wait()
        except trio.TooSlowError:
            await self.tell(guest, RemoteLine.STAY)
            await stream.send(
                RemoteEvent(token=msg.token, event="failed", error="a call at home does not end")
            )
            await stream.aclose()
            return
        compressed = msg.compressed and zpipe.available()
        await stream.send(RemoteEvent(token=msg.token, event="sending", compressed=compressed))
        fd = stream.detach_fd()
        receive_finish = self._finish_channel(guest)
        pump: trio.Process | None = None
        try:
            if compressed:
                out_fd, pump = await zpipe.compressing(fd)
                try:
                    proc = await capturer.start_migrate(out_fd, guest.pid)
                finally:
                    os.close(out_fd)
            else:
                proc = await capturer.start_migrate(fd, guest.pid)
        except BaseException:
            if pump is not None:
                zpipe.stop(pump)
                await zpipe.finished(pump)
            raise
        finally:
            os.close(fd)
        try:
            ok = False
            if await capturer.captured(proc):
                if pump is not None:
                    pumped = await zpipe.finished(pump)
                    if pumped.error:
                        log.warning(
                            "process %d of %s: compressing its image: %s",
                            guest.offer.pid,
                            guest.home.label(),
                            pumped.error,
                        )
                ok = await receive_finish.receive()
            else:
                log.warning(
                    "process %d of %s: capture failed: %s",
                    guest.offer.pid,
                    guest.home.label(),
                    await capturer.stderr_line(proc) or "no reason given",
                )
                # the copy goes on only once home's deputy has read the refusal: told to
                # go on before, it would serve the copy's next call (a read of a terminal
                # may block it) before it looks at the image, and home would wait for ever
                with trio.move_on_after(REFUSAL_READ_TIMEOUT):
                    await receive_finish.receive()
            with contextlib.suppress(trio.BrokenResourceError):  # a capturer that gave up
                await capturer.order(proc, CkptLine.GO if ok else CkptLine.RESUME)
            await proc.wait()
            if not ok:
                await self.tell(guest, RemoteLine.STAY)
        finally:
            if pump is not None and pump.returncode is None:
                zpipe.stop(pump)
                await zpipe.finished(pump)
            await close_process(proc)

    def _finish_channel(self, guest: Guest) -> trio.MemoryReceiveChannel[bool]:
        send, receive = trio.open_memory_channel[bool](1)
        guest.finish = send
        return receive


def private_dirs_valid(dirs: list[str]) -> bool:
    """An offer's -X directories keep the manual's rules (at most 10, each as
    :func:`mosix.arguments.check_private_dir` takes it, no one twice)."""
    if len(dirs) > PRIVATE_DIRS_MAX or len(set(dirs)) != len(dirs):
        return False
    try:
        return all(check_private_dir("-X", d) == d for d in dirs)
    except UsageError:
        return False
