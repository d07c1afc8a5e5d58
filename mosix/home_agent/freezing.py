"""Freezing: ``migrate PID freeze`` and ``migrate PID continue``, at the process's home.

Freezing writes the process's image to a file of its freezing space and ends
its memory: ``mosix-ckpt -o FILE -a migrate`` captures it (the process held
from the pause on; as root, the file is created and written with the user's
own ids, never by the agent) and then makes it execute the deputy in place,
as a migration does.  The deputy keeps what is the process's at home (pid,
parent, descriptors, directory, session, terminal) and holds no memory of the
program; it says hello (DeputyHello with the freeze's token) and waits for an
order.  ``continue`` sends it the file (DeputyHome): it executes the restorer
on it in place, and the program goes on where it was.  The file is removed
then, or when the frozen process is killed.

Where the file goes (mosrun(1), ALTERNATIVE FREEZING SPACE): the directory in
the process's FREEZE_DIR (its environment at start), else the lines starting
with '/' of the user's ``~/.freeze_dirs``, else the node's (``[paths]
freeze_dir``); the first directory where the capturer can write the image is
used.  Only a regular file of the user's is read back, never through a link.
Time spent frozen is added to the process's -D estimate (Registration).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import trio

from mosix.home_agent.connection import Connection
from mosix.home_agent.migration import read_all
from mosix.home_agent.refusal import Refusal
from mosix.home_agent.registry import Registration
from mosix.native import capturer, deputy
from mosix.native.helper_process import close_process
from mosix.native_names import CkptExit, CkptLine
from mosix.protocol import DeputyHello, DeputyHome
from mosix.sysinfo import proc_info

log = logging.getLogger("mosixd")
FREEZE_DIR_ENV = "FREEZE_DIR"
FREEZE_DIRS_FILE = ".freeze_dirs"  # in the user's home directory
FREEZE_DIRS_MAX = 64 * 1024  # bytes of ~/.freeze_dirs read
HELLO_TIMEOUT = 60.0  # from "go" to the deputy's hello
SYSTEM_FREEZE_DIR = "/var/mosix/freeze"  # a root agent's default (mode 1777, like /tmp)


@dataclass
class Frozen:
    """A process of this node whose image is in ``path`` and whose deputy holds its pid."""

    pid: int
    uid: int
    token: str
    path: str
    hello: trio.Event
    deputy: Connection | None = None


def default_freeze_dir(run_dir: Path) -> str:
    """The node's freezing space when the configuration names none."""
    return SYSTEM_FREEZE_DIR if os.geteuid() == 0 else str(run_dir / "freeze")


class Freezer:
    def __init__(
        self,
        socket_path: str,
        default_dir: str,
        on_change: Callable[[], None],
        nursery: trio.Nursery,
    ) -> None:
        self.socket_path = socket_path  # the deputy's agent
        self.default_dir = default_dir  # the node's freezing space
        self.on_change = on_change
        self.nursery = nursery  # where each frozen process is watched
        self.frozen: dict[int, Frozen] = {}
        self.by_token: dict[str, Frozen] = {}
        self.busy: set[int] = set()

    def take_back(self, registrations: Iterable[Registration]) -> None:
        """The frozen processes of a previous agent (its saved registrations): their
        deputies wait, and say hello again to this one."""
        for reg in registrations:
            if reg.state != "frozen" or not reg.frozen_token or reg.pid in self.frozen:
                continue
            if not proc_info.alive(reg.pid, reg.start_ticks):
                continue
            frozen = Frozen(reg.pid, reg.uid, reg.frozen_token, reg.frozen_image, trio.Event())
            self.frozen[reg.pid] = frozen
            self.by_token[frozen.token] = frozen
            self.nursery.start_soon(self._watch, frozen)
            log.info("process %d is frozen in %s", reg.pid, frozen.path)

    def is_frozen(self, pid: int) -> bool:
        return pid in self.frozen

    # ------------------------------------------------------------ freeze

    async def freeze(self, reg: Registration) -> None:
        """Freeze home process ``reg``; Refusal (one line) if it goes on running."""
        pid = reg.pid
        if pid in self.frozen:
            raise Refusal(f"process {pid} is already frozen")
        if pid in self.busy:
            raise Refusal(f"process {pid} is being frozen or continued")
        self.busy.add(pid)
        before, reg.state = reg.state, "freezing"  # nothing else moves or captures it now
        try:
            frozen = await self._freeze(reg)
        except BaseException:
            reg.state = before
            raise
        finally:
            self.busy.discard(pid)
        reg.state, reg.frozen_since = "frozen", time.time()
        reg.frozen_image, reg.frozen_token = frozen.path, frozen.token
        self.on_change()
        log.info("process %d frozen to %s", pid, frozen.path)

    async def _freeze(self, reg: Registration) -> Frozen:
        token = secrets.token_hex(16)
        problems: list[str] = []
        self.ensure_default_dir()
        own = proc_info.initial_env(reg.pid, FREEZE_DIR_ENV)
        if own is not None and not own.startswith("/"):
            raise Refusal(f"process {reg.pid} not frozen: {FREEZE_DIR_ENV} must start with '/'")
        for directory in freeze_dirs(reg.pid, reg.uid, self.default_dir):
            path = os.path.join(directory, f"freeze.{reg.pid}.{token[:12]}")
            frozen = Frozen(reg.pid, reg.uid, token, path, trio.Event())
            self.by_token[token] = frozen  # the deputy's hello finds it
            try:
                await self._capture(frozen)
            except _NoSpace as e:  # this directory would not do: the next one
                self.by_token.pop(token, None)
                problems.append(f"{directory}: {e}")
                continue
            except BaseException:
                self.by_token.pop(token, None)
                raise
            self.frozen[reg.pid] = frozen
            self.nursery.start_soon(self._watch, frozen)
            return frozen
        raise Refusal(
            f"process {reg.pid} not frozen: "
            + ("; ".join(problems) if problems else "no freezing directory")
        )

    async def _capture(self, frozen: Frozen) -> None:
        proc = await capturer.start_freeze(
            frozen.path, frozen.pid, deputy.argv(self.socket_path, frozen.token)
        )
        try:
            if not await capturer.captured(proc):
                status = await proc.wait()
                reason = await capturer.stderr_line(proc) or f"capture ended with {status}"
                remove_users_file(frozen.path, frozen.uid)  # a refusal's one-line "image"
                if status == CkptExit.FAILED:
                    raise _NoSpace(reason)
                raise Refusal(f"process {frozen.pid} not frozen: {reason}")
            await capturer.order(proc, CkptLine.GO)
            status = await proc.wait()
            if status != CkptExit.OK:
                reason = await capturer.stderr_line(proc) or f"capture ended with {status}"
                remove_users_file(frozen.path, frozen.uid)
                raise Refusal(f"process {frozen.pid} not frozen: {reason}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # a killed capturer leaves the process running
            raise
        finally:
            await close_process(proc)
        with trio.move_on_after(HELLO_TIMEOUT):
            await frozen.hello.wait()

    def ensure_default_dir(self) -> None:
        """The node's freezing space, made on first use (root's: 1777, like /tmp)."""
        with contextlib.suppress(FileExistsError, OSError):
            os.makedirs(self.default_dir, mode=0o755, exist_ok=False)
            if os.geteuid() == 0:
                os.chmod(self.default_dir, 0o1777)

    # ------------------------------------------------------------ the deputy

    def deputy_hello(self, conn: Connection, msg: DeputyHello) -> bool:
        """Whether the hello is a frozen process's (kept: its order comes with continue)."""
        frozen = self.by_token.get(msg.token)
        if frozen is None:
            return False
        if conn.peer.pid != frozen.pid or msg.pid != frozen.pid or frozen.deputy is not None:
            return False  # the migrations' answer: an end
        frozen.deputy = conn
        frozen.hello.set()
        return True

    async def _watch(self, frozen: Frozen) -> None:
        """A frozen process that is killed: its file goes with it."""
        try:
            pidfd = os.pidfd_open(frozen.pid)
        except OSError:
            pidfd = -1
        if pidfd >= 0:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        if self.frozen.get(frozen.pid) is frozen:
            self._forget(frozen)
            remove_users_file(frozen.path, frozen.uid)
            log.info("frozen process %d ended", frozen.pid)

    def _forget(self, frozen: Frozen) -> None:
        self.frozen.pop(frozen.pid, None)
        self.by_token.pop(frozen.token, None)
        self.on_change()

    # ------------------------------------------------------------ continue

    async def resume(self, reg: Registration) -> None:
        """Continue frozen process ``reg`` from its file, in place; Refusal if it cannot."""
        pid = reg.pid
        frozen = self.frozen.get(pid)
        if frozen is None:
            raise Refusal(f"process {pid} is not frozen")
        if frozen.deputy is None:  # its deputy says hello again after an agent restart
            with trio.move_on_after(HELLO_TIMEOUT):
                await frozen.hello.wait()
        if pid in self.busy or frozen.deputy is None:
            raise Refusal(f"process {pid} is being frozen or continued")
        self.busy.add(pid)
        try:
            await self._resume(frozen)
        finally:
            self.busy.discard(pid)
        if reg.frozen_since is not None:
            reg.frozen_seconds += time.time() - reg.frozen_since
        reg.state, reg.frozen_since = "running", None
        reg.frozen_image = reg.frozen_token = ""
        self.on_change()
        log.info("process %d continues from %s", pid, frozen.path)

    async def _resume(self, frozen: Frozen) -> None:
        assert frozen.deputy is not None
        try:
            img_fd = open_users_file(frozen.path, frozen.uid)
        except OSError as e:
            raise Refusal(f"process {frozen.pid}: its image {frozen.path}: {e.strerror}") from None
        err_r, err_w = os.pipe()
        try:
            await frozen.deputy.send_with_fds(DeputyHome(), [img_fd, err_w])
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            os.close(err_r)
            raise Refusal(f"process {frozen.pid} ended while frozen") from None
        finally:
            os.close(img_fd)
            os.close(err_w)
        complaint = await read_all(err_r)
        self._forget(frozen)
        if complaint:  # the file stays: what is left of the process
            raise Refusal(f"process {frozen.pid} could not continue: {complaint}")
        remove_users_file(frozen.path, frozen.uid)


class _NoSpace(Exception):
    """The capturer could not write the image in this directory (one line)."""


def freeze_dirs(pid: int, uid: int, default: str) -> list[str]:
    """Where process ``pid`` of ``uid`` may be frozen, in order of preference."""
    own = proc_info.initial_env(pid, FREEZE_DIR_ENV)
    if own:
        return [own] if own.startswith("/") else []
    listed = users_freeze_dirs(uid)
    return listed or [default]


def users_freeze_dirs(uid: int) -> list[str]:
    """The lines starting with '/' of the user's ~/.freeze_dirs (a regular file of
    theirs, not a link; read as root, so nothing else is read)."""
    try:
        home = pwd.getpwuid(uid).pw_dir
        fd = open_users_file(os.path.join(home, FREEZE_DIRS_FILE), uid)
    except (KeyError, OSError):
        return []
    with os.fdopen(fd, "rb") as f:
        text = f.read(FREEZE_DIRS_MAX).decode(errors="replace")
    return [line.strip() for line in text.splitlines() if line.startswith("/")]


def open_users_file(path: str, uid: int) -> int:
    """A descriptor of ``path`` read-only if it is a regular file of ``uid`` (not a
    link, never blocking on a FIFO); OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
        os.close(fd)
        raise OSError(0, "not a regular file of the process's user")
    return fd


def remove_users_file(path: str, uid: int) -> None:
    """Remove ``path`` if its last name is a regular file of ``uid`` (looked up and
    removed in its directory's descriptor: no link followed at the end)."""
    directory, name = os.path.split(path)
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
            os.unlink(name, dir_fd=dfd)
    except OSError as e:
        log.warning("frozen image %s: %s", path, e.strerror)
    finally:
        os.close(dfd)
