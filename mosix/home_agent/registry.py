"""The registry of MOSIX processes on this (home) node.

Two sources, merged when listing:
- registrations: a mosrun about to become its program registers it with what
  /proc cannot tell (-D estimate, start time); they are saved with the agent's
  state, so an agent restart loses nothing;
- discovery: every process started under the discipline carries the
  MOSIX_INHERIT words in its initial environment, so descendants (and
  programs that ran while the agent was down) are found in /proc.
Neither is taken on its word: the agent acts only on a process the discipline
vouches for (proc_info.disciplined: seccomp filters, no_new_privs, no set-id
ids), and only on its own: a process found in /proc belongs to the agent whose
socket its mosrun registered with (MOSIX_AGENT_SOCKET in its environment); one
that reached no agent belongs to the default agents (the system agent, a
user's own), never to a private root agent on another run directory.
With a site group (``[site] mosrun_group``), one found in /proc must also carry
the admission of a registration the gate let in (site_group.py).
A pid is matched together with its start time, so a reused pid is not taken
for the process that had it before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mosix.agent_client import AGENT_SOCKET_ENV
from mosix.arguments import UsageError, parse_inherited_words
from mosix.home_agent.limits import COMMAND_KEPT, FLAGS_KEPT, kept_words
from mosix.home_agent.site_group import SiteGroup
from mosix.protocol import ProcessInfo
from mosix.start_contract import ADMISSION_ENV, INHERIT_ENV
from mosix.sysinfo import proc_info


@dataclass
class Registration:
    pid: int
    start_ticks: int | None
    uid: int
    job: int
    estimate_minutes: int | None
    memory_mb: int | None
    flags: list[str]
    command: list[bytes]  # argv (any bytes)
    started: float = field(default_factory=time.time)
    frozen_seconds: float = 0.0
    frozen_since: float | None = None
    state: str = "running"
    # a frozen process (mosix.home_agent.freezing): its image and its deputy's token
    frozen_image: str = ""
    frozen_token: str = ""
    # the checkpoint series (mosix.ckpt.naming): -C as given, checkpoints taken, -N, -A
    ckpt_file: bytes = b""  # any bytes (a file name); kept as bytes in the state file
    ckpt_taken: int = 0
    ckpt_limit: int = 0
    ckpt_interval: int = 0

    def estimate_with_frozen_time(self, now: float) -> int | None:
        if self.estimate_minutes is None:
            return None
        frozen = self.frozen_seconds + (now - self.frozen_since if self.frozen_since else 0.0)
        return self.estimate_minutes + int(-(-frozen // 60))


def job_of(words: list[str]) -> tuple[int, int | None]:
    """(job ID, -m) from inherited option words; (0, None) when unreadable."""
    try:
        args = parse_inherited_words(words)
    except UsageError:
        return 0, None
    return args.job_id or 0, args.memory_mb


def at_home(pid: int) -> str:
    """Where a process runs on a one-node cluster."""
    return "home"


class Registry:
    def __init__(
        self, home: str, socket: str = "", private: bool = False, site: SiteGroup | None = None
    ) -> None:
        self.home = home
        self.socket = os.path.realpath(socket) if socket else ""  # this agent's control socket
        self.private = private  # a root agent on a run directory of its own
        self.site = site or SiteGroup()  # [site] mosrun_group: only admitted trees are adopted
        self.registered: dict[int, Registration] = {}

    def register(self, reg: Registration) -> None:
        self.registered[reg.pid] = reg

    def adopt(self, pid: int) -> Registration | None:
        """The registration of a live MOSIX process, made from /proc if it has none
        (a descendant of a mosrun: default checkpoint settings, as they are not inherited)."""
        reg = self.registered.get(pid)
        if reg is not None and proc_info.alive(pid, reg.start_ticks):
            return reg if proc_info.disciplined(pid) else None
        words = proc_info.inherited_words(pid)
        uid = proc_info.real_uid(pid)
        if words is None or uid is None or not self.ours(pid) or not self.claims(pid):
            return None
        job, memory = job_of(words)
        reg = Registration(
            pid=pid,
            start_ticks=proc_info.start_ticks(pid),
            uid=uid,
            job=job,
            estimate_minutes=None,
            memory_mb=memory,
            flags=kept_words(words, FLAGS_KEPT),
            command=kept_command(pid),
            started=0.0,
        )
        self.registered[pid] = reg
        return reg

    def mosix_processes(self) -> list[Registration]:
        """Every live MOSIX process of this node, each with a registration."""
        found = (self.adopt(pid) for pid in self.discover())
        return [reg for reg in found if reg is not None]

    def forget_dead(self) -> None:
        for pid, reg in list(self.registered.items()):
            if not proc_info.alive(pid, reg.start_ticks):
                del self.registered[pid]

    def discover(self, where_of: Callable[[int], str] = at_home) -> dict[int, ProcessInfo]:
        """Every live MOSIX process on this node, registered or found in /proc
        (``where_of``: where each runs, the cluster's answer)."""
        self.forget_dead()
        now = time.time()
        found: dict[int, ProcessInfo] = {}
        for pid, reg in self.registered.items():
            found[pid] = self.info(reg, now, where_of)
        for pid in proc_info.pids():
            if pid in found:
                continue
            words = proc_info.inherited_words(pid)
            uid = proc_info.real_uid(pid)
            if words is None or uid is None or not self.ours(pid) or not self.claims(pid):
                continue
            job, memory = job_of(words)
            where = where_of(pid)
            found[pid] = ProcessInfo(
                pid=pid,
                uid=uid,
                job=job,
                state=self.state_of(pid, "running"),
                where=where,
                home=self.home,
                started=0.0,
                estimate_minutes=None,
                memory_mb=memory,
                flags=kept_words(words, FLAGS_KEPT),
                command=kept_command(pid),
                why_here=why_here(pid, where),
            )
        return found

    @staticmethod
    def ours(pid: int) -> bool:
        """A process of this home: on this node, not a guest, not a checkpointer's copy."""
        return (
            proc_info.on_this_node(pid)
            and not proc_info.is_guest(pid)
            and not proc_info.is_checkpoint_copy(pid)
        )

    def claims(self, pid: int) -> bool:
        """A process found in /proc is this agent's to act on: vouched for by the
        discipline, and registered (by its mosrun) with this agent."""
        if not proc_info.disciplined(pid) or not self.admitted(pid):
            return False
        socket = proc_info.initial_env(pid, AGENT_SOCKET_ENV)
        return os.path.realpath(socket) == self.socket if socket else not self.private

    def admitted(self, pid: int) -> bool:
        """With a site group: the process carries the admission of a program the gate
        let in, for its own user and MOSIX_INHERIT words (without one: any)."""
        if not self.site.name:
            return True
        uid = proc_info.real_uid(pid)
        words = proc_info.initial_env(pid, INHERIT_ENV)
        if uid is None or words is None:
            return False
        return self.site.vouches_for(uid, words, proc_info.initial_env(pid, ADMISSION_ENV) or "")

    def state_of(self, pid: int, state: str) -> str:
        return "stopped" if state == "running" and proc_info.state_letter(pid) == "T" else state

    def info(self, reg: Registration, now: float, where_of: Callable[[int], str]) -> ProcessInfo:
        where = where_of(reg.pid)
        return ProcessInfo(
            pid=reg.pid,
            uid=reg.uid,
            job=reg.job,
            state=self.state_of(reg.pid, reg.state),
            where=where,
            home=self.home,
            started=reg.started,
            estimate_minutes=reg.estimate_with_frozen_time(now),
            memory_mb=reg.memory_mb,
            flags=reg.flags,
            command=reg.command or kept_command(reg.pid),
            why_here=why_here(reg.pid, where),
        )


def kept_command(pid: int) -> list[str]:
    """A process's command line as the agent keeps and lists it (cut to COMMAND_KEPT)."""
    return kept_words(proc_info.command(pid), COMMAND_KEPT)


def why_here(pid: int, where: str) -> str:
    """Why a process at home cannot migrate ("": it can; one away is no question)."""
    return proc_info.stay_reason(pid) if where == "home" else ""
