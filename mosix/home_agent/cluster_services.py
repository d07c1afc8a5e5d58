"""What a home does with a cluster: placement at start, migrate, balancing.

Built by the node (mosix.node.agent) when its configuration has a [cluster]:
it joins migrations out (mosix.home_agent.migration), placement
(mosix.home_agent.placement) and the balancer.  The side that hosts other
nodes' processes is mosix.remote_agent.hosting.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable

import trio

from mosix.arguments import MosrunArgs, UsageError, parse_inherited_words
from mosix.cluster.peers import Cluster
from mosix.home_agent.away_checkpoint import AwayCheckpoints
from mosix.home_agent.balancer import Balancer, Process
from mosix.home_agent.migration import HOME_TIMEOUT, MigrationError, Migrations, ProcessFacts
from mosix.home_agent.placement import Chooser, NoPlace, Request, WaitForMemory, placement_of
from mosix.home_agent.recovered_start import wait_resumed
from mosix.home_agent.registry import Registration
from mosix.protocol import Done, Message, Migrate, Refused, Register
from mosix.start_contract import remove_gate
from mosix.sysinfo import private_mounts, proc_info

log = logging.getLogger("mosixd")
GATE_POLL_SECONDS = 0.005  # how often the agent looks for the program at its gate
GATE_WAIT_SECONDS = 10.0  # a program that never reaches it (static: no shim) goes anyway


class ClusterServices:
    def __init__(
        self,
        cluster: Cluster,
        socket_path: str,
        on_change: Callable[[], None],
        nursery: trio.Nursery,
        registrations: Callable[[], list[Registration]] = list,
        last_checkpoint: Callable[[int], str | None] = lambda pid: None,
    ) -> None:
        self.cluster = cluster
        self.me = cluster.me.number
        self.nursery = nursery  # where programs placed elsewhere are moved
        self.migrations = Migrations(
            cluster, self.me, socket_path, on_change, nursery, last_checkpoint
        )
        self.chooser = Chooser(cluster.nodes, self.me)
        self.away_checkpoints = AwayCheckpoints(self.migrations)
        interval = cluster.config.balance_interval
        self.balancer = (
            Balancer(
                cluster,
                self.migrations,
                self.chooser,
                lambda: [Process(r, inherited(r), request_of(None, r)) for r in registrations()],
                self.facts,
                interval,
            )
            if interval > 0
            else None
        )

    def where(self, pid: int) -> str:
        node = self.migrations.where(pid)
        if node == self.me:
            return "home"
        found = self.cluster.nodes.by_number(node)
        return (found.name or found.address) if found else str(node)

    # ------------------------------------------------------------ at start

    def place(self, msg: Register, reg: Registration) -> Message:
        """A registration with a placement: Done(count=1) when the program is to
        wait at its gate while it is moved (a recovered one: moved once it has
        resumed); Refused when no node can take it."""
        try:
            request = request_of(msg, reg)
            target = self.chooser.choose(self.cluster.loads(), request)
        except WaitForMemory:
            target = -1  # -b -m: decided when a node qualifies
            log.info("process %d waits for a node with %d MB free", reg.pid, request.required_mb)
        except NoPlace as e:
            return Refused(error=str(e))
        if target == self.me or not (msg.gate or msg.recovering):
            return Done(count=0)
        self.nursery.start_soon(self._start_elsewhere, reg, request, target, msg.gate)
        return Done(count=1)

    async def _start_elsewhere(
        self, reg: Registration, request: Request, target: int, gate: str
    ) -> None:
        writer = await open_gate(gate, reg.pid) if gate else -1
        if not gate and not await wait_resumed(reg.pid):
            return  # the recovery failed: nothing to move
        try:
            while target < 0 and proc_info.exists(reg.pid):  # -b -m: until a node qualifies
                await self.cluster.wait_for_change()
                with contextlib.suppress(WaitForMemory):
                    target = self.chooser.best(self.cluster.loads(), request, set())
            if target < 0:
                log.info("process %d ended while waiting for %d MB", reg.pid, request.required_mb)
            elif target != self.me and proc_info.exists(reg.pid):
                try:
                    await self.migrations.send_out(reg.pid, target, self.facts(reg))
                except MigrationError as e:
                    log.warning("process %d starts at home: %s", reg.pid, e)
        finally:
            if writer >= 0:
                os.close(writer)  # the program goes on, wherever it is
            remove_gate(gate)

    # ------------------------------------------------------------ migrate

    async def migrate(self, msg: Migrate, reg: Registration) -> Message:
        # a move the balancer (or a checkpoint away) has under way ends first
        await self.migrations.settled(msg.pid, HOME_TIMEOUT)
        try:
            if msg.target == "home":
                await self.migrations.bring_home(msg.pid)
                self.hold(msg.pid)
                return Done(count=1)
            if msg.target == "out":
                request = request_of(None, reg)
                target = self.chooser.best(self.cluster.loads(), request, {self.me})
            else:
                node = self.cluster.nodes.resolve(msg.target)
                if node is None:
                    return Refused(error=f"{msg.target}: no such node in this cluster")
                target = node.number
                grid_class = request_of(None, reg).grid_class
                if not self.chooser.allows(target, grid_class):
                    return Refused(error=self.chooser.refusal(target, grid_class))
            if target == self.migrations.where(msg.pid):
                return Done(count=0)
            if self.migrations.where(msg.pid) != self.me:
                await self.migrations.bring_home(msg.pid)  # then out again: two hops
            if target != self.me:
                await self.migrations.send_out(msg.pid, target, self.facts(reg))
            self.hold(msg.pid)
            return Done(count=1)
        except WaitForMemory:
            return Refused(error="no other node can take it now")
        except (MigrationError, NoPlace) as e:
            return Refused(error=str(e))

    async def bring_all(self) -> int:
        """mosctl bring: every process of this home running elsewhere comes home (at
        once); how many came."""
        came: list[int] = []

        async def bring(pid: int) -> None:
            try:
                await self.migrations.bring_home(pid)
            except MigrationError as e:
                log.warning("process %d could not come home: %s", pid, e)
                return
            self.hold(pid)
            came.append(pid)

        async with trio.open_nursery() as nursery:
            for pid in list(self.migrations.away):
                nursery.start_soon(bring, pid)
        return len(came)

    def hold(self, pid: int) -> None:
        """A process moved by hand stays where the user put it for a while."""
        if self.balancer is not None:
            self.balancer.hold(pid)

    def facts(self, reg: Registration) -> ProcessFacts:
        args = inherited(reg)
        mode = (args.unsupported.value if args.unsupported else "u") if args else "u"
        return ProcessFacts(
            uid=reg.uid,
            gid=proc_info.real_gid(reg.pid),
            mode=mode,
            time_here=bool(args and args.local_time),
            memory_mb=proc_info.rss_mb(reg.pid),
            required_mb=(args.memory_mb or 0) if args else 0,
            command=reg.command,
            grid_class=(args.grid_class or 0) if args else 0,
            private_dirs=private_mounts.private_dirs(reg.pid),
        )


def inherited(reg: Registration) -> MosrunArgs | None:
    try:
        return parse_inherited_words(reg.flags)
    except UsageError:
        return None


def request_of(msg: Register | None, reg: Registration) -> Request:
    args = inherited(reg)
    return Request(
        placement=placement_of(msg.placement if msg else ""),
        force_elsewhere=bool(msg and msg.force_elsewhere),
        required_mb=(args.memory_mb or 0) if args else 0,
        grid_class=(args.grid_class or 0) if args else 0,
    )


async def open_gate(path: str, pid: int) -> int:
    """The gate's write end once the program waits at it (-1: it never came)."""
    with trio.move_on_after(GATE_WAIT_SECONDS):
        while proc_info.exists(pid):
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                if e.errno not in (errno.ENXIO, errno.EINTR):
                    return -1
            await trio.sleep(GATE_POLL_SECONDS)
    return -1
