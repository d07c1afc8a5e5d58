"""Checkpoint requests: take one now (migrate -C, the program, mosctl), change -C -N -A."""

from __future__ import annotations

import errno
import os

import trio

from mosix.ckpt import trigger
from mosix.home_agent.checkpoints import CheckpointError, Checkpoints
from mosix.home_agent.connection import Peer
from mosix.home_agent.refusal import PATH_MAX, Refusal, check_owner
from mosix.home_agent.registry import Registration, Registry
from mosix.home_agent.state import Changes
from mosix.protocol import (
    CHECKPOINT_ACTIONS,
    CHECKPOINT_ORIGINS,
    Checkpoint,
    CheckpointSettings,
    Done,
    Message,
    ProgramCheckpoint,
)


def mosix_process(registry: Registry, pid: int) -> Registration:
    """The registration of a live MOSIX process of this node (CheckpointError: none)."""
    reg = registry.adopt(pid)
    if reg is None:
        raise CheckpointError(f"process {pid} does not run under mosrun")
    return reg


class CheckpointRequests:
    def __init__(
        self, registry: Registry, checkpoints: Checkpoints, changes: Changes, nursery: trio.Nursery
    ) -> None:
        self.registry = registry
        self.checkpoints = checkpoints
        self.changes = changes
        self.nursery = nursery  # where -A's timers run

    async def checkpoint(self, peer: Peer, msg: Checkpoint) -> Message:
        if msg.action not in CHECKPOINT_ACTIONS or msg.origin not in CHECKPOINT_ORIGINS:
            raise Refusal(f"no such checkpoint request: {msg.action} ({msg.origin})")
        check_owner(peer, msg.pid)
        try:
            done = await self.checkpoints.take(msg.pid, msg.action)
        except CheckpointError as e:
            raise Refusal(str(e)) from None
        self.changes.changed()
        return done

    def checkpoint_settings(self, peer: Peer, msg: CheckpointSettings) -> Message:
        check_owner(peer, msg.pid)
        return self._settings(msg)

    async def for_copy_away(self, pid: int, msg: ProgramCheckpoint) -> int:
        """The checkpoint call of process ``pid``'s copy on another node (it asked
        through that node: mosix.home_agent.migration): 0 or a negative errno,
        what the guard answers at home."""
        if msg.call == trigger.OP_CHECKPOINT:
            try:
                done = await self.checkpoints.take(pid, "checkpoint")
            except CheckpointError:
                return -errno.ECANCELED
            self.changes.changed()
            return -errno.ECANCELED if done.failed else 0
        settings = CheckpointSettings(pid=pid)
        if msg.call == trigger.OP_SET_FILE:
            try:  # relative to the process's cwd: its deputy's, here
                cwd = os.fsencode(os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                return -errno.ECANCELED
            file = msg.file if msg.file.startswith(b"/") else cwd.rstrip(b"/") + b"/" + msg.file
            if len(file) > PATH_MAX:
                return -errno.ENAMETOOLONG
            settings = CheckpointSettings(pid=pid, file=file)
        elif msg.call == trigger.OP_SET_LIMIT:
            settings = CheckpointSettings(pid=pid, limit=msg.value)
        elif msg.call == trigger.OP_SET_INTERVAL:
            settings = CheckpointSettings(pid=pid, interval=msg.value)
        else:
            return -errno.EINVAL
        try:
            self._settings(settings)
        except Refusal:
            return -errno.ECANCELED
        return 0

    def _settings(self, msg: CheckpointSettings) -> Message:
        try:
            reg = mosix_process(self.registry, msg.pid)
        except CheckpointError as e:
            raise Refusal(str(e)) from None
        if (msg.limit is not None and msg.limit < 0) or (
            msg.interval is not None and msg.interval < 0
        ):
            raise Refusal("negative checkpoint setting")
        if msg.file is not None:
            if not msg.file or b"\0" in msg.file:
                raise Refusal("empty checkpoint file name")
            if len(msg.file) > PATH_MAX:
                raise Refusal(f"a file name longer than {PATH_MAX} characters")
            reg.ckpt_file, reg.ckpt_taken = msg.file, 0
        if msg.limit is not None:
            reg.ckpt_limit = msg.limit
        if msg.interval is not None:
            reg.ckpt_interval = msg.interval
            self.checkpoints.schedule(self.nursery, reg)
        self.changes.changed()
        return Done()
