"""Automatic load balancing: the agent's loop that moves this node's processes.

Every ``balance_interval`` (the [cluster] setting; 0 turns balancing off) the
home agent samples its processes (mosix.home_agent.process_stats), builds each
node's state from the load vectors, and asks mosix.home_agent.balancing.plan
for the moves worth making; it then sends processes out or brings them home,
several at a time.

Which processes: those of this home that run under mosrun without -L (-l lifts
it), are not queued, frozen, stopped, batch jobs or already migrating, can
move (nothing pins them: locked memory, shared maps, more threads than an
image holds), and have stayed where they are for at least RESIDENCE_ROUNDS
rounds since their last move, manual or
automatic, and are not kept where they are by mosctl (stay or lstay here,
stay on the node where they run).  A move is made only when two rounds in a
row want it, so a moment's load (a program starting, a capture) moves
nothing.  A load vector measured (its samples: a load interval) before a move
finished does not show that move yet: the move is added to what the vector
says, so the next round does not move more than needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from mosix.arguments import MosrunArgs
from mosix.cluster.admin import says
from mosix.cluster.peers import Cluster
from mosix.home_agent.balancing import Candidate, Move, NodeState, plan
from mosix.home_agent.migration import MigrationError, Migrations, ProcessFacts
from mosix.home_agent.placement import Chooser, Request
from mosix.home_agent.process_stats import DEFAULT_DECAY, StatsTable
from mosix.home_agent.registry import Registration
from mosix.protocol import LoadVector
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")
RESIDENCE_ROUNDS = 4  # rounds a process stays after a move before it may move again
FORWARD_COST = 60e-6  # seconds a forwarded call costs the process (benchmarks/RESULTS.md)


@dataclass
class Recent:
    """A move whose effect the load vectors may not show yet."""

    source: int
    target: int
    finished: float | None = None  # wall clock (the vectors' stamps are wall clock)


@dataclass(frozen=True)
class Process:
    """A process of this home as the balancer needs it."""

    reg: Registration
    args: MosrunArgs | None
    request: Request


class Balancer:
    def __init__(
        self,
        cluster: Cluster,
        migrations: Migrations,
        chooser: Chooser,
        processes: Callable[[], list[Process]],
        facts: Callable[[Registration], ProcessFacts],
        interval: float,
    ) -> None:
        self.cluster = cluster
        self.migrations = migrations
        self.chooser = chooser
        self.processes = processes
        self.facts = facts
        self.interval = interval
        self.stats = StatsTable()
        self.recent: list[Recent] = []
        self.moved_at: dict[int, float] = {}  # pid -> monotonic time of its last move
        self.wanted: set[int] = set()  # pids the last round would have moved
        self.rounds = 0  # rounds done
        self.moves = 0  # moves begun (some may fail: the process then stays)

    def hold(self, pid: int) -> None:
        """``pid`` just moved (by hand too): leave it where it is for a while."""
        self.moved_at[pid] = time.monotonic()
        self.stats.reset(pid)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(self.interval)
                try:
                    moves = await self.round()
                except Exception:
                    log.exception("balancing: a round failed")
                    continue
                for move, reg in moves:
                    nursery.start_soon(self._carry_out, move, reg)

    async def round(self) -> list[tuple[Move, Registration]]:
        """Sample, decide; the moves to make (not made yet)."""
        everyone = self.processes()
        alive = {p.reg.pid for p in everyone}
        self.moved_at = {pid: t for pid, t in self.moved_at.items() if pid in alive}
        procs = {p.reg.pid: p for p in everyone if self.may_move(p)}
        decays = {pid: decay_of(p.args) for pid, p in procs.items()}
        candidates = await trio.to_thread.run_sync(self._candidates, procs, decays)
        nodes = self.node_states()
        planned = plan(candidates, nodes, self.cluster.me.number, FORWARD_COST)
        confirmed = [m for m in planned if m.pid in self.wanted]
        self.wanted = {m.pid for m in planned}
        self.rounds += 1
        return [(m, procs[m.pid].reg) for m in confirmed]

    def may_move(self, p: Process) -> bool:
        pid = p.reg.pid
        if p.args is None or p.args.auto_migrate is False or p.args.batch is not None:
            return False
        if p.reg.state != "running" or pid in self.migrations.busy:
            return False
        held = self.moved_at.get(pid)
        return held is None or time.monotonic() - held >= RESIDENCE_ROUNDS * self.interval

    def stays(self, where: int, loads: dict[int, LoadVector]) -> bool:
        """mosctl stay (here, or where it runs: its load vector says so), lstay here."""
        if where == self.cluster.me.number:
            admin = self.cluster.admin
            return admin.stay or admin.lstay
        return says(loads.get(where), "stay")

    def _candidates(self, procs: dict[int, Process], decays: dict[int, int]) -> list[Candidate]:
        """Blocking (reads /proc): run in a thread."""
        self.stats.update(decays)
        me = self.cluster.me.number
        loads = self.cluster.loads()
        found = []
        for pid, p in procs.items():
            stats = self.stats.get(pid)
            if stats is None:
                continue  # not sampled over an interval yet
            where = self.migrations.where(pid)
            if self.stays(where, loads):
                continue
            if where == me and (proc_info.state_letter(pid) in ("T", "t", "Z", None)):
                continue
            if where == me and proc_info.stay_reason(pid):
                continue
            allowed = frozenset(self.chooser.eligible(loads, p.request))
            found.append(
                Candidate(
                    pid=pid,
                    where=where,
                    demand=stats.demand,
                    io_rate=stats.io_rate,
                    io_aware=p.args is None or p.args.io_aware is not False,
                    memory_mb=proc_info.rss_mb(pid) if where == me else 0,
                    required_mb=p.request.required_mb,
                    allowed=allowed | {me},
                )
            )
        return found

    def node_states(self) -> dict[int, NodeState]:
        """Each live node's state, with the moves its vector does not show yet added."""
        vectors = self.cluster.loads()
        window = self.cluster.config.load_interval  # what a vector's load is the mean of
        self.recent = [m for m in self.recent if not settled(m, vectors, window)]
        states = {}
        for n, v in vectors.items():
            load = v.load
            for m in self.recent:
                if not shows(v, m, window):
                    load += (n == m.target) - (n == m.source)
            states[n] = NodeState(
                n, max(v.cpus, 1) * max(v.speed, 0.01), max(load, 0.0), v.free_mb, v.total_mb
            )
        return states

    async def _carry_out(self, move: Move, reg: Registration) -> None:
        self.moves += 1
        recent = Recent(move.source, move.target)
        self.recent.append(recent)
        self.hold(move.pid)
        me = self.cluster.me.number
        try:
            if move.target == me:
                await self.migrations.bring_home(move.pid)
            else:
                await self.migrations.send_out(move.pid, move.target, self.facts(reg))
        except MigrationError as e:
            self.recent.remove(recent)
            log.info("balancing: process %d stays on node %d: %s", move.pid, move.source, e)
            return
        recent.finished = time.time()
        self.hold(move.pid)
        log.info(
            "balancing: process %d from node %d to node %d (share %.2f -> %.2f)",
            move.pid,
            move.source,
            move.target,
            move.before,
            move.after,
        )


def shows(v: LoadVector, m: Recent, window: float) -> bool:
    """Whether vector ``v`` was measured wholly after move ``m`` finished."""
    return m.finished is not None and v.stamp - window >= m.finished


def settled(m: Recent, vectors: dict[int, LoadVector], window: float) -> bool:
    """Both ends' vectors show the move (or the nodes are gone)."""
    return all(shows(vectors[n], m, window) for n in (m.source, m.target) if n in vectors)


def decay_of(args: MosrunArgs | None) -> int:
    return DEFAULT_DECAY if args is None or args.decay is None else args.decay
