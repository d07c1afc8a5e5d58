"""Starting the agent: in the foreground, detached (the embedded default), or from systemd.

Only one agent runs per run directory: it holds an exclusive lock on
``mosixd.lock`` for its whole life.  A detached agent tells the process that
started it that its socket is ready by writing to an inherited pipe, so the
starter waits for an event, not for time to pass.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from pathlib import Path

import trio

from mosix.agent_paths import SYSTEM_RUN_DIR, AgentPaths
from mosix.cluster.peers import ClusterError
from mosix.home_agent.agent_config import AgentConfig
from mosix.home_agent.control_socket import bind_listener
from mosix.node.agent import NodeAgent

log = logging.getLogger("mosixd")


class AlreadyRunning(Exception):
    pass


def prepare_run_dir(paths: AgentPaths) -> int:
    """Create the run directory and take the agent lock; returns the lock fd."""
    shared = paths.run_dir == SYSTEM_RUN_DIR or os.geteuid() == 0
    paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o755 if shared else 0o700)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"an agent already runs on {paths.socket}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def setup_logging(path: Path | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(path) if path is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s mosixd[%(process)d] %(message)s"))
    root = logging.getLogger("mosixd")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def serve(paths: AgentPaths, config: AgentConfig, ready_fd: int | None) -> None:
    """Run the agent until it is stopped (the lock must be held)."""
    shared = os.geteuid() == 0
    listener = bind_listener(paths, shared)
    log.info("node %d (%s) listening on %s", config.node, config.name, paths.socket)
    agent = NodeAgent(paths, config)
    if agent.cluster is not None:
        agent.cluster.listen()  # a port or address that cannot be used stops us here

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.serve, listener)
            if ready_fd is not None:
                os.write(ready_fd, b"ready\n")
                os.close(ready_fd)

    trio.run(main)


def detach() -> None:
    """Become a daemon: the caller's child exits at once, the grandchild goes on."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def run(paths: AgentPaths, config: AgentConfig, foreground: bool, ready_fd: int | None) -> int:
    if not foreground:
        detach()
    try:
        lock = prepare_run_dir(paths)
    except AlreadyRunning as e:
        if ready_fd is not None:
            os.close(ready_fd)  # the starter sees EOF and connects to the running agent
        if foreground:
            sys.stderr.write(f"mosixd: {e}\n")
            return 1
        return 0
    except OSError as e:
        sys.stderr.write(f"mosixd: {paths.run_dir}: {e.strerror}\n")
        return 1
    setup_logging(None if foreground else paths.log)
    try:
        serve(paths, config, ready_fd)
    except ClusterError as e:
        if foreground:
            sys.stderr.write(f"mosixd: {e}\n")
        else:
            log.error("%s", e)
        return 1
    finally:
        os.close(lock)
    return 0
