"""Where a line of -S waits for its turn in the node agent's queue (-q/-Q).

The manual: -S combines with the queue, -S setting an absolute upper limit on
simultaneous jobs while the queue decides how many may run; "no more than 10
jobs will be queued at any given moment".  The scheduler keeps that bound: a
line enters the queue only when fewer than :data:`QUEUED_MAX` lines wait in it
and the lines waiting plus the lines running stay within maxjobs.

The scheduler speaks to the queue through :class:`TurnQueue`; tests pass a
fake one, mosrun passes :class:`AgentQueue`.  Each queued line is one ticket
of the runner's connection; the runner releases a ticket when its line ends
(the agent cannot watch a line's pid: the runner spawns it only on Go).  A
turn given while lines run is seen when a line ends (the runner blocks in
wait()); when no line runs, the runner blocks on the agent.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from mosix.agent_client import AgentClient, AgentUnavailable, adopt, connect
from mosix.arguments import QueueMode, QueueRequest
from mosix.protocol import Abort, Enqueue, Go, Message, Queued, Refused, Release

QUEUED_MAX = 10


class TurnQueue(Protocol):
    def request(self, seq: int, line: bytes) -> None:
        """Line ``seq`` enters the queue and waits for its turn."""

    def turns(self, block: bool) -> Sequence[int]:
        """Lines whose turn has come; with ``block``, wait until there is at least one."""

    def withdraw(self, seq: int) -> None:
        """Line ``seq`` leaves the queue without running (mosrun is stopping)."""

    def finished(self, seq: int) -> None:
        """Line ``seq`` ran and ended: its resources are free again."""

    def aborted(self) -> Sequence[int]:
        """Lines the queue refused (-q lines aborted, or the agent stopped): not to run."""


class AgentQueue:
    """The node agent's queue, for the lines of one -S runner."""

    RETRY_MAX = 2.0

    def __init__(
        self, request: QueueRequest, job: int, memory_mb: int, client: AgentClient | None = None
    ) -> None:
        self.request_ = request
        self.job = job
        self.memory_mb = memory_mb
        self.client: AgentClient | None = client or connect(autostart=False)
        self.lines: dict[int, bytes] = {}  # seq -> line, while it has a ticket or awaits one
        self.ticket_of: dict[int, int] = {}
        self.seq_of: dict[int, int] = {}
        self.pending: deque[int] = deque()  # seqs whose Queued reply has not come yet
        self.early: dict[int, Message] = {}  # Go/Abort that came before their Queued
        self.running: set[int] = set()
        self.ready: list[int] = []
        self.refused: list[int] = []
        self.dropped: set[int] = set()  # withdrawn before their ticket was known
        self.unreleased: set[int] = set()  # tickets whose Release did not reach the agent
        self.claimed: set[int] = set()  # released tickets claimed back after a reconnect
        self.reasons: set[str] = set()  # refusals already said

    def enqueue(self, seq: int, ticket: int) -> None:
        q = self.request_
        if self.client is None:
            self.client = connect(autostart=False)
        self.client.send(
            Enqueue(
                pid=os.getpid(),
                job=self.job,
                priority=q.priority,
                mode=q.mode.value,
                memory_mb=self.memory_mb,
                parallel=1,
                command=[b"bash", b"-c", self.lines[seq]],
                ticket=ticket,
            )
        )
        if not ticket:
            self.pending.append(seq)

    def request(self, seq: int, line: bytes) -> None:
        self.lines[seq] = line
        try:
            self.enqueue(seq, 0)
        except AgentUnavailable:
            self.no_queue(seq)

    def no_queue(self, seq: int) -> None:
        """The agent has stopped (or cannot be reached): the manual's rule for a stopped
        queue: -q lines do not run, -Q lines bypass the queue."""
        self.client = None
        if self.request_.mode is QueueMode.RUN_ON_ABORT:
            self.running.add(seq)
            self.ready.append(seq)
        else:
            self.forget(seq)
            self.refused.append(seq)

    def handle(self, msg: Message) -> None:
        match msg:
            case Queued(ticket=t) if t not in self.seq_of and self.pending:
                seq = self.pending.popleft()
                self.ticket_of[seq], self.seq_of[t] = t, seq
                if seq in self.dropped:
                    self.dropped.discard(seq)
                    self.release(seq)
                elif t in self.early:
                    self.handle(self.early.pop(t))
            case Go(ticket=t) | Abort(ticket=t) if t not in self.seq_of:
                if t not in self.claimed:
                    self.early[t] = msg
            case Go(ticket=t):
                seq = self.seq_of[t]
                if seq not in self.running and seq in self.lines:
                    self.running.add(seq)
                    self.ready.append(seq)
            case Abort(ticket=t):
                seq = self.seq_of[t]
                self.forget(seq)
                self.refused.append(seq)
            case Refused(error=error) if self.pending:
                # the answer to a new line's Enqueue (a priority or a limit the agent
                # will not grant): that line does not run; the reason is said once
                seq = self.pending.popleft()
                self.forget(seq)
                self.refused.append(seq)
                if error not in self.reasons:
                    self.reasons.add(error)
                    sys.stderr.write(f"mosrun: -q: {error}\n")
            case Refused(error=error):
                raise AgentUnavailable(f"-q: {error}")

    def pump(self, block: bool) -> None:
        """Take in what the agent sent; with ``block``, wait for a turn or a refusal."""
        while self.client is not None:
            waiting = block and not self.ready and not self.refused
            readable, _, _ = select.select([self.client.sock], [], [], None if waiting else 0)
            if not readable:
                return
            msg = self.client.receive()
            if msg is not None:
                self.handle(msg)
            else:
                self.reconnect()

    def waiting(self) -> list[int]:
        """Lines that still wait for their turn."""
        return [seq for seq in self.lines if seq not in self.running]

    def drain(self) -> None:
        """Take in what a closed connection still holds (the agent's last words)."""
        client = self.client
        while client is not None:
            readable, _, _ = select.select([client.sock], [], [], 0)
            try:
                msg = client.receive() if readable else None
            except AgentUnavailable:
                msg = None
            if msg is None:
                break
            self.handle(msg)

    def reconnect(self) -> None:
        """The agent went away: if lines still wait for their turn (a crash), find it
        again and present every ticket, keeping their places; otherwise do without."""
        self.drain()
        if self.client is not None:
            self.client.close()
            self.client = None
        if not self.waiting():
            return
        delay = 0.05
        while True:
            try:
                self.client = connect(autostart=False)
                break
            except AgentUnavailable:
                time.sleep(delay)  # a new agent is on its way (no event tells us)
                delay = min(delay * 2, self.RETRY_MAX)
        self.pending.clear()
        assert self.client is not None
        self.claimed |= self.unreleased
        for ticket in sorted(self.unreleased):
            # the new agent restored it as running: claim it, then let it go
            self.client.send(Enqueue(pid=os.getpid(), ticket=ticket))
            self.client.send(Release(ticket=ticket))
        self.unreleased.clear()
        for seq in sorted(self.lines):
            self.enqueue(seq, self.ticket_of.get(seq, 0))

    def call(self, action: Callable[[], None]) -> None:
        try:
            action()
        except AgentUnavailable:
            self.reconnect()

    def turns(self, block: bool) -> Sequence[int]:
        self.call(lambda: self.pump(block))
        ready, self.ready = self.ready, []
        return ready

    def aborted(self) -> Sequence[int]:
        refused, self.refused = self.refused, []
        return refused

    def forget(self, seq: int) -> None:
        self.lines.pop(seq, None)
        self.running.discard(seq)
        ticket = self.ticket_of.pop(seq, None)
        if ticket is not None:
            self.seq_of.pop(ticket, None)

    def release(self, seq: int) -> None:
        ticket = self.ticket_of.get(seq)
        self.forget(seq)
        if ticket is None:
            self.dropped.add(seq)
            return
        try:
            if self.client is None:
                raise AgentUnavailable("no agent")
            self.client.send(Release(ticket=ticket))
        except AgentUnavailable:
            self.unreleased.add(ticket)
            self.reconnect()

    def withdraw(self, seq: int) -> None:
        self.release(seq)

    def finished(self, seq: int) -> None:
        self.release(seq)


def agent_queue(request: QueueRequest, agent_fd: int | None = None) -> TurnQueue:
    """The node agent's queue for this runner's lines (job and -m from MOSIX_INHERIT),
    over the connection on ``agent_fd`` if mosrun made one (-g: with the wrapper's group,
    which the agent's gate looks at; a new connection after an agent restart has none)."""
    from mosix.start_contract import outer_settings

    settings = outer_settings(os.environ)
    client = None if agent_fd is None else adopt(agent_fd)
    return AgentQueue(request, settings.job_id or 0, settings.memory_mb or 0, client)
