"""Migration, the home node's side: sending a process out and bringing it back.

Sending process P to node N (the target's side: mosix.remote_agent.inbound):

1. offer: a connection to N's agent carries MigrateOffer; N answers
   MigrateAccept (or Refused).  This connection stays open for the life of
   the remote copy: N reports on it (RemoteEvent) and home gives orders
   (MigrateFinish).
2. two more connections to N: one whose bytes after MigrateImage are the
   image, one that after MigrateChannel becomes the forwarding channel.  Both
   are handed over as raw descriptors to C programs; Python never reads them.
3. mosix-ckpt -a migrate captures P into the image connection, P held
   stopped; N's mosix-remote restores it and answers MigrateResult.
4. restored: mosix-ckpt makes P execute mosix-deputy in place (same pid,
   parent, files...); the deputy says hello on the control socket
   (DeputyHello) and receives the channel.  Not restored (N refused, died, or
   the restore failed): P continues at home as if nothing happened.

Bringing it home: BringHome to N on a new connection; N captures the copy
and streams the image back on it; the deputy receives that socket
(DeputyHome), takes the image whole, has the restorer check it and executes
the restorer in place; success (the error pipe closes without a word) is
told to N (MigrateFinish), which ends the copy there.  A complaint (an image
the restorer refuses, a restorer that cannot run) leaves the copy running
on N, its deputy serving it.

The per-call traffic never passes here: see csrc/remote/mosix_remote.c and
csrc/deputy/mosix_deputy.c.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mosix.cluster.peers import Cluster
from mosix.cluster.stream import PeerStream, PeerUnavailable
from mosix.discipline import forward_filter
from mosix.home_agent.connection import Connection
from mosix.home_agent.link_rates import LinkRates, delivery_rate
from mosix.native import capturer, deputy, zpipe
from mosix.native.helper_process import close_process
from mosix.native_names import CkptExit, CkptLine
from mosix.private_limits import PrivateLimits
from mosix.protocol import (
    BringHome,
    DeputyChannel,
    DeputyEnd,
    DeputyHello,
    DeputyHome,
    DeputyLost,
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
OFFER_TIMEOUT = 10.0  # for the target's answer to an offer
RESTORE_TIMEOUT = 120.0  # from the end of the capture to the target's result
TARGET_REASON_WAIT = 2.0  # for the target's reason after a capture it cut short
HOME_TIMEOUT = 120.0  # for a copy's image to come home
PUMP_END_WAIT = 10.0  # for a home-coming's decompressor to end once the image is in
LOST_REASONS_KEPT = 256  # ends not yet told to a deputy (a dead deputy never asks)


class MigrationError(Exception):
    """A migration that did not happen (one line); the process runs where it was."""


@dataclass
class Away:
    """A process of this node whose copy runs on another node."""

    pid: int
    token: str
    node: int
    ctl: PeerStream
    chan_fd: int = -1  # until the deputy takes it
    # the direct channels (the copy's shim to the deputy, one per thread), likewise
    direct_fds: list[int] = field(default_factory=list)
    deputy: Connection | None = None
    deputy_came: trio.Event = field(default_factory=trio.Event)  # set with ``deputy``
    returning: bool = False


@dataclass
class ProcessFacts:
    """What the target needs to know about a process (from the registry)."""

    uid: int
    gid: int
    mode: str
    time_here: bool
    memory_mb: int
    required_mb: int
    command: list[bytes]  # argv (any bytes)
    grid_class: int = 0  # -G{class}: the target checks it against its own map too
    private_dirs: list[str] = field(default_factory=list)  # -X: their files move with it


class Migrations:
    def __init__(
        self,
        cluster: Cluster,
        node: int,
        socket_path: str,
        on_change: Callable[[], None],
        nursery: trio.Nursery,
        last_checkpoint: Callable[[int], str | None] = lambda pid: None,
    ) -> None:
        self.cluster = cluster
        self.node = node
        self.socket_path = socket_path
        self.on_change = on_change
        self.away: dict[int, Away] = {}
        self.by_token: dict[str, Away] = {}
        self.busy: set[int] = set()  # pids with a migration under way (take/release)
        self._released: dict[int, trio.Event] = {}  # set when a busy pid is released
        self.lost_reasons: dict[int, str] = {}  # for a deputy that asks after the end
        # the checkpoint file a lost process resumes from (None: it ends)
        self.last_checkpoint = last_checkpoint
        self.nursery = nursery  # where each migrated process is watched
        # serves a copy's own checkpoint call (mosix.home_agent.checkpoint_requests): -errno or 0
        self.program_checkpoint: Callable[[int, ProgramCheckpoint], Awaitable[int]] | None = None
        # [private]: the most a process's -X files take at home, in the cluster, on the grid
        self.private_limits = PrivateLimits()
        # [cluster] compress: whether an image to or from a node travels compressed
        mode = cluster.config.compress
        self.links = LinkRates(mode, mode != "off" and zpipe.available())
        if mode == "on" and not self.links.can_compress:
            log.warning("cluster.compress: zstd (%s) is not available here: off", zpipe.LIBRARY)

    def take(self, pid: int) -> None:
        """Mark ``pid`` as moving (or its halves taken): no other move starts."""
        self.busy.add(pid)
        self._released.setdefault(pid, trio.Event())

    def release(self, pid: int) -> None:
        self.busy.discard(pid)
        released = self._released.pop(pid, None)
        if released is not None:
            released.set()

    async def settled(self, pid: int, timeout: float) -> None:
        """Wait until no move of ``pid`` is under way (at most ``timeout`` s): a
        user's request waits for the balancer's move instead of failing."""
        with trio.move_on_after(timeout):
            while pid in self.busy:
                await self._released[pid].wait()

    def where(self, pid: int) -> int:
        """The node the process runs on (this node's number when home)."""
        away = self.away.get(pid)
        return away.node if away else self.node

    # ------------------------------------------------------------ out

    async def send_out(self, pid: int, node: int, facts: ProcessFacts) -> None:
        """Migrate home process ``pid`` to ``node``; MigrationError if it stays."""
        if pid in self.busy:
            raise MigrationError(f"process {pid} is already migrating")
        if pid in self.away:
            raise MigrationError(f"process {pid} already runs on node {self.away[pid].node}")
        self.take(pid)
        self.lost_reasons.pop(pid, None)  # a process of an earlier life of the pid
        try:
            await self._send_out(pid, node, facts)
        finally:
            self.release(pid)

    async def _send_out(self, pid: int, node: int, facts: ProcessFacts) -> None:
        token = secrets.token_hex(16)
        # one direct channel per thread that may call at once, threads made away
        # included: a pool of the most the copy's filter takes (more threads share)
        directs = forward_filter.DIRECT_MAX
        try:
            ctl = await self.cluster.open(node)
        except PeerUnavailable as e:
            raise MigrationError(str(e)) from None
        ok = False
        # the fast path would send calls on its private files home: they are served where
        # it runs, by its supervisor there (mosix-remote), so every call goes through it
        direct = self.cluster.config.fast_path and not facts.private_dirs
        limits = self.private_limits
        nodes = self.cluster.nodes
        same_partition = nodes.partition_of(node) == nodes.partition_of(self.node)
        compress = self.links.compress_to(node)
        try:
            await ctl.send(
                MigrateOffer(
                    token=token,
                    home=self.node,
                    pid=pid,
                    uid=facts.uid,
                    gid=facts.gid,
                    mode=facts.mode,
                    time_here=facts.time_here,
                    memory_mb=facts.memory_mb,
                    required_mb=facts.required_mb,
                    command=facts.command,
                    direct=direct,
                    direct_channels=directs,
                    grid_class=facts.grid_class,
                    private_dirs=facts.private_dirs,
                    private_home_mb=limits.home_mb,
                    private_away_mb=limits.away_mb(same_partition),
                    compressed=compress,
                )
            )
            with trio.fail_after(OFFER_TIMEOUT):
                answer = await ctl.receive()
            if isinstance(answer, Refused):
                raise MigrationError(f"node {node} refused: {answer.error}")
            if not isinstance(answer, MigrateAccept) or answer.token != token:
                raise MigrationError(f"node {node}: unexpected answer {answer.OP}")
            img_fd = await self._side_connection(node, MigrateImage(token=token))
            chan_fd = -1
            direct_fds: list[int] = []
            try:
                chan_fd = await self._side_connection(node, MigrateChannel(token=token))
                if direct:
                    for index in range(directs):
                        first = MigrateChannel(token=token, direct=True, index=index)
                        direct_fds.append(await self._side_connection(node, first))
            except BaseException:
                for fd in (img_fd, chan_fd, *direct_fds):
                    if fd >= 0:
                        os.close(fd)
                raise
            away = Away(pid, token, node, ctl, chan_fd, direct_fds)
            ok = await self._capture_and_hand_over(away, img_fd, compress and answer.compressed)
        except PeerUnavailable as e:
            raise MigrationError(str(e)) from None
        except trio.TooSlowError:
            raise MigrationError(f"node {node} does not answer") from None
        finally:
            if not ok:
                with contextlib.suppress(Exception):
                    await ctl.aclose()
        self.away[pid] = away
        self.by_token[token] = away
        self.on_change()
        self.nursery.start_soon(self._watch, away)
        log.info("process %d migrated to node %d", pid, node)

    async def _side_connection(self, node: int, first: MigrateImage | MigrateChannel) -> int:
        stream = await self.cluster.open(node)
        try:
            await stream.send(first)
        except BaseException:
            await stream.aclose()
            raise
        return stream.detach_fd()

    async def _capture_and_hand_over(self, away: Away, img_fd: int, compressed: bool) -> bool:
        """Capture the process into ``img_fd`` (through a compressor when
        ``compressed``), which is kept until the image is written: then TCP's
        delivery rate on it measures the link (mosix.home_agent.link_rates)."""
        pump: trio.Process | None = None
        try:
            deputy_argv = deputy.argv(self.socket_path, away.token)
            rounds = self.cluster.config.precopy_rounds  # [cluster] precopy_rounds; 0: none
            out_fd = img_fd
            if compressed:
                out_fd, pump = await zpipe.compressing(img_fd)
            try:
                proc = await capturer.start_migrate(out_fd, away.pid, deputy_argv, rounds or None)
            finally:
                if out_fd != img_fd:
                    os.close(out_fd)
        except BaseException:
            os.close(img_fd)
            if pump is not None:
                zpipe.stop(pump)
                await zpipe.finished(pump)
            raise
        try:
            captured = await capturer.captured(proc)
            if captured:
                await self._image_sent(away, img_fd, pump)
            os.close(img_fd)
            img_fd = -1
            if not captured:
                status = await proc.wait()
                why = await capture_error(proc, away.pid)
                cut_short = await self._target_error(away) if status == CkptExit.FAILED else None
                raise MigrationError(cut_short or why)
            try:
                with trio.fail_after(RESTORE_TIMEOUT):
                    result = await away.ctl.receive()
            except (PeerUnavailable, trio.TooSlowError) as e:
                result = MigrateResult(token=away.token, error=f"node {away.node}: {e}")
            if not isinstance(result, MigrateResult) or result.error:
                await capturer.order(proc, CkptLine.RESUME)
                await proc.wait()
                why = result.error if isinstance(result, MigrateResult) else result.OP
                raise MigrationError(f"not restored on node {away.node}: {why}")
            self.by_token[away.token] = away  # the deputy's hello finds its channel
            await capturer.order(proc, CkptLine.GO)
            status = await proc.wait()
            if status != CkptExit.OK:
                self.by_token.pop(away.token, None)
                raise MigrationError(await capture_error(proc, away.pid))
            if rounds:
                summary = await capturer.precopy_summary(proc)
                log.info("process %d: pre-copy %s", away.pid, summary)
            return True
        except BaseException:
            for fd in (away.chan_fd, *away.direct_fds):
                with contextlib.suppress(OSError):
                    os.close(fd)
            away.chan_fd = -1
            away.direct_fds = []
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # cleans up: a killed capturer leaves the process running
            raise
        finally:
            if img_fd >= 0:
                os.close(img_fd)
            if pump is not None and pump.returncode is None:
                zpipe.stop(pump)
                await zpipe.finished(pump)
            await close_process(proc)

    async def _image_sent(self, away: Away, img_fd: int, pump: trio.Process | None) -> None:
        """The capturer wrote the whole image: the compressor's end (it ends with its
        input), then the link's measure."""
        if pump is not None:
            with trio.move_on_after(RESTORE_TIMEOUT):
                pumped = await zpipe.finished(pump)
                log_pumped(pumped, away.pid, "compressing", f"compressed to node {away.node}")
        self.links.note(away.node, delivery_rate(img_fd))

    async def _target_error(self, away: Away) -> str | None:
        """Why the target stopped taking the image, when it says so soon (a capture
        cut short by it: its reason, e.g. a -X directory it does not have, rather
        than the capture's broken connection)."""
        with trio.move_on_after(TARGET_REASON_WAIT):
            try:
                result = await away.ctl.receive()
            except PeerUnavailable:
                return None
            if isinstance(result, MigrateResult) and result.error:
                return f"not restored on node {away.node}: {result.error}"
        return None

    # ------------------------------------------------------------ the deputy

    async def deputy_hello(self, conn: Connection, msg: DeputyHello) -> None:
        away = self.by_token.get(msg.token)
        if away is None or conn.peer.pid != away.pid or msg.pid != away.pid:
            why = self.lost_reasons.pop(conn.peer.pid, "no migration of this process is under way")
            await conn.send(DeputyEnd(error=why))
            return
        fd, away.chan_fd = away.chan_fd, -1
        directs, away.direct_fds = away.direct_fds, []
        if fd < 0:
            await conn.send(DeputyEnd(error="its channel was already taken"))
            return
        away.deputy = conn
        away.deputy_came.set()
        fds = [fd, *directs]
        try:
            await conn.send_with_fds(DeputyChannel(), fds)
        finally:
            for each in fds:
                os.close(each)

    def deputy_stop(self, conn: Connection) -> None:
        """The copy was stopped by SIGSTOP (``migrate PID chkstop``): stop its deputy
        so, which the discipline does not let it do itself; SIGCONT continues both."""
        away = self.away.get(conn.peer.pid)
        if away is None or away.deputy is not conn:
            return  # not a deputy of ours: nobody is stopped on its word
        with contextlib.suppress(ProcessLookupError):
            os.kill(away.pid, signal.SIGSTOP)

    async def deputy_lost(self, conn: Connection, msg: DeputyLost) -> None:
        away = self.away.get(conn.peer.pid)
        if away is None or away.deputy is not conn:
            # already forgotten (its node's connection broke first and the end
            # was sent then) or never ours: the deputy still waits for an order
            why = self.lost_reasons.pop(conn.peer.pid, "its remote copy was lost")
            with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                await conn.send(DeputyEnd(error=why))
            return
        if away.returning:
            return  # a migration under way answers it
        log.warning("process %d: its channel to node %d broke", away.pid, away.node)
        await self._lost(away, self._gone(away.node, "its channel broke"))

    def _gone(self, node: int, detail: str) -> str:
        """The line a lost process ends with (after "mosrun: process PID: ")."""
        found = self.cluster.nodes.by_number(node)
        label = found.label() if found else f"node {node}"
        return f"{label}, where it ran, is gone: {detail.removeprefix(label + ': ')}"

    async def _lost(self, away: Away, why: str) -> None:
        """The copy is gone with its node: the deputy ends with ``why`` on stderr,
        or, when the process has a checkpoint (taken at home), says so and
        executes the restorer on it: the process resumes here from there."""
        told = False
        if away.deputy is not None:
            path = self.last_checkpoint(away.pid)
            fd = -1
            if path is not None:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    log.warning("process %d: checkpoint %s: %s", away.pid, path, e.strerror)
            with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                try:
                    if fd >= 0:
                        end = DeputyEnd(error=f"{why}; it resumes at home from {path}")
                        await away.deputy.send_with_fds(end, [fd])
                        log.info("process %d resumes at home from %s", away.pid, path)
                    else:
                        await away.deputy.send(DeputyEnd(error=why))
                    told = True
                finally:
                    if fd >= 0:
                        os.close(fd)
        if not told:
            self.lost_reasons[away.pid] = why  # until its deputy asks
            while len(self.lost_reasons) > LOST_REASONS_KEPT:
                del self.lost_reasons[next(iter(self.lost_reasons))]
        self._forget(away)

    def _forget(self, away: Away) -> None:
        self.away.pop(away.pid, None)
        self.by_token.pop(away.token, None)
        for fd in (away.chan_fd, *away.direct_fds):
            if fd >= 0:
                os.close(fd)
        away.chan_fd = -1
        away.direct_fds = []
        self.on_change()

    async def _watch(self, away: Away) -> None:
        """The target's reports on the copy, until it ends or comes home.

        The connection ends (PeerUnavailable) when the target's agent dies,
        or when the target has not answered for lost_after seconds (a dead
        node, a cut network: peers.give_up_after): the copy is then lost and
        the deputy ends with a line naming the node."""
        why = ""
        try:
            while True:
                event = await away.ctl.receive()
                if isinstance(event, ProgramCheckpoint):
                    self.nursery.start_soon(self._program_checkpoint, away, event)
                    continue
                if not isinstance(event, RemoteEvent):
                    continue
                if event.event == "home":
                    self.nursery.start_soon(self._bring_home_quietly, away.pid)
                elif event.event == "exit":
                    break  # the deputy ends as the copy did (the channel's EXIT)
                elif event.event == "lost":
                    why = self._gone(away.node, "its channel broke")
                    break
        except PeerUnavailable as e:
            why = self._gone(away.node, str(e))
        finally:
            if not away.returning and self.away.get(away.pid) is away:
                if why:
                    log.warning("process %d: %s", away.pid, why)
                    with trio.CancelScope(shield=True):
                        await self._lost(away, why)
                else:
                    self._forget(away)
            with contextlib.suppress(Exception):
                await away.ctl.aclose()

    async def _program_checkpoint(self, away: Away, msg: ProgramCheckpoint) -> None:
        """The copy's own checkpoint call, served here as at home; the answer goes back."""
        serve = self.program_checkpoint
        result = -errno.ENOSYS if serve is None else await serve(away.pid, msg)
        with contextlib.suppress(
            PeerUnavailable, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            await away.ctl.send(ProgramCheckpointAnswer(token=away.token, result=result))

    # ------------------------------------------------------------ home

    async def _bring_home_quietly(self, pid: int) -> None:
        # asked as soon as it arrived (its private files over the maximum there): the
        # move that took it there finishes first, and its deputy takes over here
        await self.settled(pid, HOME_TIMEOUT)
        away = self.away.get(pid)
        if away is not None:
            with trio.move_on_after(HOME_TIMEOUT):
                await away.deputy_came.wait()
        try:
            await self.bring_home(pid)
        except MigrationError as e:
            log.warning("process %d could not come home: %s", pid, e)

    async def bring_home(self, pid: int) -> None:
        away = self.away.get(pid)
        if away is None:
            raise MigrationError(f"process {pid} is at home")
        if pid in self.busy or away.deputy is None:
            raise MigrationError(f"process {pid} is already migrating")
        self.take(pid)
        away.returning = True
        try:
            await self._bring_home(away)
        except BaseException:
            away.returning = False
            raise
        finally:
            self.release(pid)

    async def _bring_home(self, away: Away) -> None:
        assert away.deputy is not None
        compress = self.links.compress_to(away.node)
        try:
            stream = await self.cluster.open(away.node)
            await stream.send(BringHome(token=away.token, compressed=compress))
            with trio.fail_after(HOME_TIMEOUT):
                answer = await stream.receive()
        except (PeerUnavailable, trio.TooSlowError) as e:
            raise MigrationError(f"node {away.node}: {e}") from None
        if not isinstance(answer, RemoteEvent) or answer.event != "sending":
            await stream.aclose()
            why = getattr(answer, "error", "") or answer.OP
            raise MigrationError(f"node {away.node} cannot send it: {why}")
        img_fd = stream.detach_fd()
        pump: trio.Process | None = None
        if compress and answer.compressed:
            try:
                source, pump = await zpipe.decompressing(img_fd)
            finally:
                os.close(img_fd)
            img_fd = source
        err_r, err_w = os.pipe()
        try:
            await away.deputy.send_with_fds(DeputyHome(), [img_fd, err_w])
        finally:
            os.close(img_fd)
            os.close(err_w)
        complaint = await read_all(err_r)
        if pump is not None:
            await self._decompressed(away, pump, bool(complaint))
        # No complaint: restored (a process that ends at once, e.g. by the exec it came
        # home for, may be gone already; one killed while restoring is gone too, and
        # its copy must end with it either way).
        restored = not complaint
        with contextlib.suppress(PeerUnavailable):
            await away.ctl.send(MigrateFinish(token=away.token, ok=restored))
        if not restored:
            # the deputy refused the image before restoring anything: the copy goes
            # on where it is and the deputy serves it (a deputy that died with the
            # restorer ends the copy: its channel's end is reported as lost)
            log.warning(
                "process %d stays on node %d: it cannot come home: %s",
                away.pid,
                away.node,
                complaint,
            )
            raise MigrationError(f"it stays on node {away.node}: {complaint}")
        self._forget(away)
        log.info("process %d came home from node %d", away.pid, away.node)

    async def _decompressed(self, away: Away, pump: trio.Process, abandoned: bool) -> None:
        """A home-coming's decompressor, once the deputy has the image (or gave up)."""
        if abandoned:
            zpipe.stop(pump)
        with trio.move_on_after(PUMP_END_WAIT) as waited:
            pumped = await zpipe.finished(pump)
        if waited.cancelled_caught or abandoned:
            return  # killed by finished(): the image is no longer wanted
        log_pumped(pumped, away.pid, "decompressing", f"from node {away.node} decompressed")


def log_pumped(pumped: zpipe.Pumped, pid: int, doing: str, done: str) -> None:
    """One line on an image's compressor or decompressor: its error, or its bytes."""
    if pumped.error:
        log.warning("process %d: %s its image: %s", pid, doing, pumped.error)
    else:
        sizes = pumped.bytes_in, pumped.bytes_out
        log.info("process %d: image %s: %d -> %d bytes", pid, done, *sizes)


async def read_all(fd: int) -> str:
    """Everything written to a pipe until its writers close it."""
    data = bytearray()
    try:
        while True:
            await trio.lowlevel.wait_readable(fd)
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data.decode(errors="replace").strip()


async def capture_error(proc: trio.Process, pid: int) -> str:
    return await capturer.stderr_line(proc) or f"capture of process {pid} failed"
