"""A process's requests about itself: registration (where it starts) and migrate."""

from __future__ import annotations

import trio

from mosix.arguments import MosrunArgs
from mosix.home_agent.checkpoints import Checkpoints
from mosix.home_agent.cluster_services import ClusterServices
from mosix.home_agent.connection import Peer
from mosix.home_agent.freezing import Freezer
from mosix.home_agent.limits import COMMAND_KEPT, FLAGS_KEPT, kept_words, words_size
from mosix.home_agent.migration import MigrationError
from mosix.home_agent.placement import NoPlace, placement_of
from mosix.home_agent.refusal import PATH_MAX, Refusal, check_owner
from mosix.home_agent.registry import Registration, Registry
from mosix.home_agent.shares import UserShares
from mosix.home_agent.state import Changes
from mosix.protocol import Done, Message, Migrate, Refused, Register, Registered
from mosix.start_contract import placement_problem
from mosix.sysinfo import proc_info

FREEZE_TARGETS = ("freeze", "continue")


class ProcessRequests:
    def __init__(
        self,
        registry: Registry,
        shares: UserShares,
        checkpoints: Checkpoints,
        services: ClusterServices | None,
        changes: Changes,
        nursery: trio.Nursery,
        freezer: Freezer,
        private_home_mb: int = 0,
    ) -> None:
        self.registry = registry
        self.shares = shares
        self.checkpoints = checkpoints
        self.services = services  # None: a one-node cluster
        self.changes = changes
        self.nursery = nursery  # where -A's timers run
        self.freezer = freezer  # migrate PID freeze|continue
        self.private_home_mb = private_home_mb  # [private] home_mb: told to mosrun (-X)

    def register(self, peer: Peer, msg: Register) -> Message:
        uid = check_owner(peer, msg.pid)
        if msg.checkpoint_limit < 0 or msg.checkpoint_interval < 0 or msg.checkpoint_next < 0:
            raise Refusal("negative checkpoint setting")
        if len(msg.checkpoint_file) > PATH_MAX or len(msg.gate) > PATH_MAX:
            raise Refusal(f"a file name longer than {PATH_MAX} characters")
        command = kept_words(msg.command, COMMAND_KEPT)
        flags = kept_words(msg.flags, FLAGS_KEPT)
        self.shares.check(uid, words_size(command) + words_size(flags), pid=msg.pid)
        reg = Registration(
            pid=msg.pid,
            start_ticks=proc_info.start_ticks(msg.pid),
            uid=uid,
            job=msg.job,
            estimate_minutes=msg.estimate_minutes,
            memory_mb=msg.memory_mb,
            flags=flags,
            command=command,
            ckpt_file=msg.checkpoint_file,
            ckpt_taken=msg.checkpoint_next,
            ckpt_limit=msg.checkpoint_limit,
            ckpt_interval=msg.checkpoint_interval,
        )
        elsewhere = 0
        if msg.placement:
            answer = self.place(msg, reg)
            if isinstance(answer, Refused):
                return answer
            elsewhere = answer.count if isinstance(answer, Done) else 0
        self.registry.register(reg)
        self.checkpoints.schedule(self.nursery, reg)
        self.changes.changed()
        admission = self.registry.site.admission(uid, " ".join(msg.flags))
        return Registered(count=elsewhere, admission=admission, private_mb=self.private_home_mb)

    def place(self, msg: Register, reg: Registration) -> Message:
        """Where a program with a placement option starts (Done(count=1): elsewhere)."""
        if self.services is not None:
            return self.services.place(msg, reg)
        try:  # a one-node cluster: the placement must name this node (or -F)
            placement = placement_of(msg.placement)
        except NoPlace as e:
            return Refused(error=str(e))
        problem = placement_problem(
            MosrunArgs(placement=placement, force_elsewhere=msg.force_elsewhere)
        )
        return Refused(error=problem) if problem else Done()

    async def migrate(self, peer: Peer, msg: Migrate) -> Message:
        check_owner(peer, msg.pid)
        reg = self.registry.adopt(msg.pid)
        if reg is None:
            raise Refusal(f"process {msg.pid} does not run under mosrun")
        if msg.target in FREEZE_TARGETS:
            return await self.freeze_or_continue(msg.target, reg)
        if self.freezer.is_frozen(msg.pid):
            raise Refusal(f"process {msg.pid} is frozen (migrate {msg.pid} continue)")
        # what pins it (threads, locks, shared maps) first: true with or without a cluster
        why = proc_info.stay_reason(msg.pid) if msg.target != "home" else ""
        if why:
            raise Refusal(f"process {msg.pid} cannot migrate: {why}")
        if self.services is None:
            raise Refusal(f"{msg.target}: this node has no cluster to migrate to")
        return await self.services.migrate(msg, reg)

    async def freeze_or_continue(self, target: str, reg: Registration) -> Message:
        if target == "continue":
            await self.freezer.resume(reg)
            return Done()
        services = self.services
        if services is not None and services.migrations.where(reg.pid) != services.me:
            # frozen at home: it comes home first (its image is written here)
            try:
                await services.migrations.bring_home(reg.pid)
            except MigrationError as e:
                raise Refusal(f"process {reg.pid} not frozen: {e}") from None
            services.hold(reg.pid)
        if proc_info.state_letter(reg.pid) == "T":
            raise Refusal(f"process {reg.pid} is stopped: continue it (SIGCONT) first")
        await self.freezer.freeze(reg)
        return Done()
