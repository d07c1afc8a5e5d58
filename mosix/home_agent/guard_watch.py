"""Watching the guards: a guard's death does not turn -u into -e.

When the guard (csrc/mosix_guard.c) dies, the kernel fails the calls it would
have answered with ENOSYS, so a user who killed its own guard had every
unsupported call under -u fail quietly instead of killing.  Seccomp cannot
express "kill when no one listens" (a stacked KILL filter would win over the
listener), so the node agent does it:

- before its program starts, the guard announces itself (GuardHello) with the
  filter's listener attached; the agent checks the claim (the caller runs this
  installation's mosix-exec, the named root is a process of the caller's user
  under the discipline and still the launcher) and keeps a pidfd on the guard
  and its own copy of the listener, never reading from it;
- while the agent holds that copy, a call the dead guard would have answered
  waits instead of failing; when the guard dies the agent kills (SIGKILL) the
  tree's processes whose mode is -u, then closes its copy: the waiting calls of
  the -e and -w processes get ENOSYS as before (-w loses its warning only);
- the tree: the root's descendants (ppid chains) and every process carrying the
  guard's tag (MOSIX_GUARD=PID:TICKS, which mosix-exec puts in the program's
  environment).  A user can forge or drop the tag only on its own processes, and
  the agent acts only on processes of the guard's user that the discipline vouches
  for, on this node, never a guest or a checkpointer's copy.

A guard that ends because its filter has no users left (the listener hangs up)
leaves nothing to do.  Without an agent, or when the agent refuses, nothing
changes: the guard runs as before.  An agent restart forgets its watches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
from collections.abc import Callable
from dataclasses import dataclass

import trio

from mosix.discipline.launcher import LAUNCHER
from mosix.exits import Failure
from mosix.home_agent.connection import Connection
from mosix.native import native_path
from mosix.native_names import GUARD_ENV
from mosix.protocol import Done, GuardHello, Message, Refused
from mosix.start_contract import INHERIT_ENV
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")

MODES = ("u", "e", "w")  # mosix.arguments.Unsupported's letters
MAX_GUARDS_PER_USER = 1024
PID_MAX = 1 << 22  # the kernel's largest pid_max
TREE_FIELDS = ("PPid", *proc_info.VOUCHED_FIELDS)  # what the tree of a guard is found by


@dataclass
class Watched:
    pid: int  # the guard
    ticks: int  # its start time
    uid: int  # the tree's user
    root: int  # the program
    root_ticks: int
    mode: str  # the launching mosrun's -u/-e/-w letter
    pidfd: int
    listener: int  # the agent's copy, never read

    @property
    def tag(self) -> str:
        return f"{self.pid}:{self.ticks}"


class GuardRefusal(Exception):
    pass


def runs_launcher(pid: int, launcher: os.stat_result) -> bool:
    """The process runs this installation's mosix-exec (a non-root agent may not
    look at a guard, which is not dumpable: it serves its owner alone, so yes)."""
    try:
        exe = os.stat(f"/proc/{pid}/exe")
    except PermissionError:
        return os.geteuid() != 0
    except OSError:
        return False
    return (exe.st_dev, exe.st_ino) == (launcher.st_dev, launcher.st_ino)


def mode_of(words: str | None, default: str) -> str:
    """The last -u/-e/-w word of MOSIX_INHERIT, as the guard reads it (process_mode.c)."""
    mode = default
    for word in (words or "").split(" "):
        if len(word) == 2 and word[0] == "-" and word[1] in MODES:
            mode = word[1]
    return mode


def polled(fd: int, mask: int) -> bool:
    """poll(2) reports one of ``mask`` on ``fd`` now."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(revents & mask for _, revents in poller.poll(0))


def hung_up(listener: int) -> bool:
    """No task uses the filter any more."""
    return polled(listener, select.POLLHUP | select.POLLERR)


def ended(pidfd: int) -> bool:
    return polled(pidfd, select.POLLIN | select.POLLHUP)


class GuardWatch:
    def __init__(self, ours: Callable[[int], bool], nursery: trio.Nursery) -> None:
        self.ours = ours  # Registry.ours: on this node, not a guest, not a checkpoint copy
        self.nursery = nursery  # where each guard's watch runs
        self.per_user: dict[int, int] = {}

    # ---------------------------------------------------------- the hello

    def hello(self, conn: Connection, msg: GuardHello) -> Message:
        fds = conn.take_fds()
        watched: Watched | None = None
        try:
            if len(fds) != 1:
                raise GuardRefusal("guard-hello: expected the filter's listener")
            watched = self.check(conn, msg, fds[0])
        except GuardRefusal as e:
            return Refused(error=str(e))
        finally:
            if watched is None:
                for fd in fds:
                    os.close(fd)
        self.per_user[watched.uid] = self.per_user.get(watched.uid, 0) + 1
        self.nursery.start_soon(self.watch, watched)
        return Done()

    def check(self, conn: Connection, msg: GuardHello, listener: int) -> Watched:
        peer = conn.peer
        if msg.mode not in MODES:
            raise GuardRefusal(f"guard-hello: no such mode {msg.mode!r}")
        if not 0 < msg.root < PID_MAX:
            raise GuardRefusal(f"guard-hello: no process {msg.root}")
        owner = proc_info.real_uid(msg.root)
        root_ticks = proc_info.start_ticks(msg.root)
        if owner is None or root_ticks is None:
            raise GuardRefusal(f"guard-hello: no process {msg.root}")
        if owner != peer.uid and not peer.is_root:
            raise GuardRefusal(f"guard-hello: process {msg.root} belongs to another user")
        if self.per_user.get(owner, 0) >= MAX_GUARDS_PER_USER:
            raise GuardRefusal(f"guard-hello: {MAX_GUARDS_PER_USER} guards watched for this user")
        try:
            launcher = os.stat(native_path(LAUNCHER))
        except (Failure, OSError) as e:
            raise GuardRefusal(f"guard-hello: {e}") from None
        try:
            pidfd = os.pidfd_open(peer.pid)
        except OSError as e:
            raise GuardRefusal(f"guard-hello: process {peer.pid}: {e.strerror}") from None
        try:
            ticks = proc_info.start_ticks(peer.pid)
            if not runs_launcher(peer.pid, launcher):
                raise GuardRefusal(f"guard-hello: process {peer.pid} is not a guard")
            if not runs_launcher(msg.root, launcher) or not proc_info.disciplined(msg.root):
                raise GuardRefusal(
                    f"guard-hello: process {msg.root} is not a program starting under mosrun"
                )
            if ticks is None or ended(pidfd) or not proc_info.alive(msg.root, root_ticks):
                raise GuardRefusal("guard-hello: the guard or its program ended meanwhile")
        except GuardRefusal:
            os.close(pidfd)
            raise
        return Watched(peer.pid, ticks, owner, msg.root, root_ticks, msg.mode, pidfd, listener)

    # ---------------------------------------------------------- the watch

    async def watch(self, w: Watched) -> None:
        try:
            await trio.lowlevel.wait_readable(w.pidfd)
            if not hung_up(w.listener):
                killed, others = await trio.to_thread.run_sync(self.kill_tree, w)
                log.warning(
                    "guard %d of uid %d died while its tree lives: killed %s (its -u "
                    "processes); %d others get ENOSYS",
                    w.pid,
                    w.uid,
                    " ".join(map(str, killed)) or "none",
                    others,
                )
        finally:
            os.close(w.listener)  # the waiting calls of -e and -w fail with ENOSYS now
            os.close(w.pidfd)
            self.per_user[w.uid] -= 1
            if not self.per_user[w.uid]:
                del self.per_user[w.uid]

    def tree(self, w: Watched) -> dict[int, int]:
        """The live processes of the guard's tree: pid -> start time."""
        status: dict[int, dict[str, str]] = {}
        for pid in proc_info.pids():
            fields = proc_info.status_fields(pid, TREE_FIELDS)
            if fields is not None and fields.get("Uid", "").split()[:1] == [str(w.uid)]:
                status[pid] = fields
        children: dict[int, list[int]] = {}
        for pid, fields in status.items():
            children.setdefault(int(fields.get("PPid", "0") or 0), []).append(pid)
        found: set[int] = set()
        if proc_info.alive(w.root, w.root_ticks):
            todo = [w.root]
            while todo:
                pid = todo.pop()
                if pid not in found:
                    found.add(pid)
                    todo += children.get(pid, [])
        found |= {p for p in status if proc_info.initial_env(p, GUARD_ENV) == w.tag}
        members: dict[int, int] = {}
        for pid in found:
            ticks = proc_info.start_ticks(pid)
            vouched = pid in status and proc_info.vouched(status[pid])
            if ticks is not None and vouched and self.ours(pid):
                members[pid] = ticks
        return members

    def kill_tree(self, w: Watched) -> tuple[list[int], int]:
        """SIGKILL the tree's -u processes; returns them and how many others live."""
        killed: list[int] = []
        others = 0
        for pid, ticks in sorted(self.tree(w).items()):
            if mode_of(proc_info.initial_env(pid, INHERIT_ENV), w.mode) != "u":
                others += 1
                continue
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue  # gone
            try:
                if proc_info.start_ticks(pid) == ticks and proc_info.real_uid(pid) == w.uid:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                        killed.append(pid)
            finally:
                os.close(pidfd)
        return killed, others
