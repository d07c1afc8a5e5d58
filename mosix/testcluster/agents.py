"""Each node's configuration and its mosixd, started inside the node.

The configuration goes to the node's private /etc/mosix/mosixd.toml, mosixd's
default path (and MOSIX_CONFIG names it too); the cluster secret, the same for
every node, to /etc/mosix/cluster.secret (mode 0600).  The agent runs detached
(``--detach``: logs to the node's /run/mosix/mosixd.log) and says it listens
through ``--ready-fd``.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mosix.testcluster.errors import ClusterError
from mosix.testcluster.layout import CONFIG_PATH, RUN_DIR, SECRET_PATH, Layout
from mosix.testcluster.namespaces import node_command, node_env
from mosix.testcluster.processes import namespace_id, stop_process

READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class ClusterSettings:
    """The [cluster] section every node gets (None: leave the section out)."""

    port: int = 2490
    load_interval: float = 0.5
    dead_after: float = 3.0
    balance_interval: float = 1.0  # 0: no automatic balancing
    fast_path: bool | None = None  # None: the agent's default (on)
    lost_after: float | None = None  # None: the agent's default
    precopy_rounds: int | None = None  # None: the agent's default (live migration)
    compress: str | None = None  # None: the agent's default (auto: on slow links)
    site_group: str = ""  # [site] mosrun_group on every node ("": none)


def config_text(layout: Layout, k: int, nodes: int, cluster: ClusterSettings | None) -> str:
    lines = [
        "[node]",
        f"number = {k}",
        f'name = "{layout.node_name(k)}"',
        "[paths]",
        f'run_dir = "{RUN_DIR}"',
    ]
    if cluster is not None and cluster.site_group:
        lines += ["[site]", f'mosrun_group = "{cluster.site_group}"']
    if cluster is not None:
        lines += [
            "[cluster]",
            f'secret_file = "{SECRET_PATH}"',
            f"port = {cluster.port}",
            f"load_interval = {cluster.load_interval}",
            f"dead_after = {cluster.dead_after}",
            f"balance_interval = {cluster.balance_interval}",
        ]
        if cluster.fast_path is not None:
            lines.append(f"fast_path = {'true' if cluster.fast_path else 'false'}")
        if cluster.lost_after is not None:
            lines.append(f"lost_after = {cluster.lost_after}")
        if cluster.precopy_rounds is not None:
            lines.append(f"precopy_rounds = {cluster.precopy_rounds}")
        if cluster.compress is not None:
            lines.append(f'compress = "{cluster.compress}"')
        for j in range(1, nodes + 1):
            lines += [
                "[[cluster.node]]",
                f"number = {j}",
                f'address = "{layout.address(j)}"',
                f'name = "{layout.node_name(j)}"',
            ]
    return "\n".join(lines) + "\n"


def write_configs(layout: Layout, nodes: int, cluster: ClusterSettings | None) -> None:
    """Every node's mosixd.toml and the shared secret, written through the host's view."""
    secret = secrets.token_hex(32) + "\n"
    for k in range(1, nodes + 1):
        etc = layout.private_dir(k, "/etc/mosix")
        (etc / os.path.basename(CONFIG_PATH)).write_text(config_text(layout, k, nodes, cluster))
        secret_file = etc / os.path.basename(SECRET_PATH)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)


def mosixd_argv() -> list[str]:
    found = shutil.which("mosixd")
    return [found] if found else [sys.executable, "-m", "mosix.tools.mosixd"]


def start_agent(layout: Layout, k: int) -> int:
    """Start node k's mosixd and wait until it listens; its pid."""
    read_end, write_end = os.pipe()
    try:
        argv = [*mosixd_argv(), "--detach", "--config", CONFIG_PATH, "--ready-fd", str(write_end)]
        launcher = subprocess.Popen(
            node_command(layout, k, argv),
            pass_fds=[write_end],
            env=node_env(),
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(write_end)
        write_end = -1
        _, errors = launcher.communicate(timeout=READY_TIMEOUT)
        if launcher.returncode != 0:
            first = errors.strip().splitlines()[-1:] or [f"status {launcher.returncode}"]
            raise ClusterError(f"node {k}: mosixd: {first[0]}")
        if _read_ready(read_end) != b"ready\n":
            raise ClusterError(f"node {k}: mosixd did not get ready (see {log_path(layout, k)})")
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    pid = agent_pid(layout, k)
    if pid is None:
        raise ClusterError(f"node {k}: mosixd got ready but holds no lock")
    return pid


def _read_ready(fd: int) -> bytes:
    """What the agent writes to its ready pipe before closing it (EOF: it failed)."""
    deadline = time.monotonic() + READY_TIMEOUT
    got = b""
    while not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        got += chunk
    return got


def log_path(layout: Layout, k: int) -> str:
    return str(layout.private_dir(k, "/run/mosix") / "mosixd.log")


def agent_pid(layout: Layout, k: int) -> int | None:
    """The pid of node k's running agent (from its lock file), or None."""
    lock = layout.private_dir(k, "/run/mosix") / "mosixd.lock"
    try:
        text = lock.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    own_net = namespace_id(f"/proc/{pid}/ns/net")
    same_node = own_net is not None and own_net == namespace_id(layout.netns_file(k))
    return pid if same_node and b"mosixd" in cmdline else None


def stop_agent(layout: Layout, k: int) -> bool:
    """An orderly stop of node k's agent (SIGTERM, wait); False if none ran."""
    pid = agent_pid(layout, k)
    return pid is not None and stop_process(pid)
