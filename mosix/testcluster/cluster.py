"""LocalCluster: bring a test cluster up, use its nodes, take it down.

    with LocalCluster(3).up() as cluster:
        cluster.run(1, ["mosctl", "status"])        # inside node 1
        cluster.node_path(2, "/tmp/out")             # node 2's /tmp/out, seen from the host
        cluster.cut(3); cluster.heal(3)              # node 3 off the network and back
        cluster.kill_node(2)                         # every process of node 2 dies at once

``down()`` removes everything of the cluster and may be called at any time, also
after a crash (``up()`` first removes a leftover cluster of the same name).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from mosix.testcluster import agents, clocks, cpu_limit, measure, mounts, network
from mosix.testcluster.agents import ClusterSettings
from mosix.testcluster.errors import BadRequest, ClusterError
from mosix.testcluster.layout import (
    BASE_DIR,
    DEFAULT_NAME,
    LOCK_FILE,
    PRIVATE_DIRS,
    Layout,
    check_node_count,
    private_to_nodes,
)
from mosix.testcluster.namespaces import node_command, node_env
from mosix.testcluster.processes import NamespaceId, kill_all, namespace_id, pids_in

OWNER_FILE = "owner"  # in the cluster's directory: pid of the process that brought it up


class LocalCluster:
    def __init__(
        self,
        nodes: int = 3,
        name: str = DEFAULT_NAME,
        cluster: ClusterSettings | None = ClusterSettings(),  # noqa: B008 (frozen)
        start_agents: bool = True,
        cpus: float | None = None,
        clock_offsets: bool = False,
    ) -> None:
        """``cpus``: each node's share of the machine's processors (None: no limit;
        see mosix.testcluster.cpu_limit).  ``clock_offsets``: node k's CLOCK_MONOTONIC
        and CLOCK_BOOTTIME run k * 1000 s ahead (mosix.testcluster.clocks)."""
        check_node_count(nodes)
        if cpus is not None:
            cpu_limit.check(cpus)
        self.cpus = cpus
        self.clock_offsets = clock_offsets
        self.layout = Layout(name)
        self.nodes = nodes
        self.settings = cluster
        self.start_agents = start_agents

    @classmethod
    def existing(cls, name: str = DEFAULT_NAME) -> LocalCluster:
        """The cluster of that name that is up now (its size found from its namespaces)."""
        layout = Layout(name)
        numbers = network.node_numbers(layout)
        if not numbers:
            raise BadRequest(f"no test cluster {name!r} is up")
        return cls(max(numbers), name)

    # --- life cycle ---

    def up(self) -> LocalCluster:
        if os.geteuid() != 0:
            raise ClusterError("the test cluster needs root (network and mount namespaces)")
        check_installation_visible()
        with machine_lock():
            self._build()
        return self

    def _build(self) -> None:
        remove_unlocked(self.layout)
        try:
            mounts.ensure_base()
            self.layout.directory.mkdir(mode=0o755)
            (self.layout.directory / OWNER_FILE).write_text(f"{os.getpid()}\n")
            network.create(self.layout, self.nodes)
            if self.cpus is not None:
                cpu_limit.create(self.layout, self.nodes, self.cpus)
            for k in self.numbers:
                mounts.create_node(self.layout, k)
                if self.clock_offsets:
                    clocks.create(self.layout, k)
            agents.write_configs(self.layout, self.nodes, self.settings)
            if self.start_agents:
                for k in self.numbers:
                    agents.start_agent(self.layout, k)
        except BaseException:
            remove_unlocked(self.layout)
            raise

    def down(self) -> None:
        remove(self.layout)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()

    # --- nodes ---

    @property
    def numbers(self) -> range:
        return range(1, self.nodes + 1)

    def address(self, k: int) -> str:
        self._check(k)
        return self.layout.address(k)

    def command(self, k: int, argv: list[str], cwd: str | None = None) -> list[str]:
        """``argv`` as a command line that runs it inside node k (nsenter)."""
        self._check(k)
        return node_command(self.layout, k, argv, cwd)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return node_env(base)

    def popen(self, k: int, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside node k; ``cwd`` is looked up in the node (default "/")."""
        cwd = popen_kwargs.pop("cwd", None)
        env = node_env(popen_kwargs.pop("env", None))
        return subprocess.Popen(
            self.command(k, argv, None if cwd is None else str(cwd)), env=env, **popen_kwargs
        )

    def run(self, k: int, argv: list[str], **run_kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside node k to its end (subprocess.run's arguments)."""
        cwd = run_kwargs.pop("cwd", None)
        env = node_env(run_kwargs.pop("env", None))
        return subprocess.run(
            self.command(k, argv, None if cwd is None else str(cwd)), env=env, **run_kwargs
        )

    def node_path(self, k: int, path: str) -> Path:
        """Where the host reads node k's ``path`` (its private directories, or the shared rest)."""
        self._check(k)
        clean = os.path.normpath(path)
        for inside in PRIVATE_DIRS:
            if clean == inside or clean.startswith(inside + "/"):
                return self.layout.private_dir(k, inside) / os.path.relpath(clean, inside)
        return Path(clean)

    def processes(self, k: int) -> list[int]:
        """Pids of the processes living in node k."""
        return pids_in(self._namespaces(k))

    # --- agents ---

    def agent_pid(self, k: int) -> int | None:
        self._check(k)
        return agents.agent_pid(self.layout, k)

    def start_agent(self, k: int) -> int:
        self._check(k)
        return agents.start_agent(self.layout, k)

    def stop_agent(self, k: int) -> bool:
        self._check(k)
        return agents.stop_agent(self.layout, k)

    def restart_agent(self, k: int) -> int:
        """Stop node k's agent if it runs (orderly), start a new one; its pid."""
        self.stop_agent(k)
        return self.start_agent(k)

    def agent_log(self, k: int) -> Path:
        return self.node_path(k, "/run/mosix/mosixd.log")

    # --- faults and links ---

    def kill_node(self, k: int) -> int:
        """SIGKILL every process of node k (as if it died); how many there were."""
        self._check(k)
        return kill_all(self._namespaces(k))

    def cut(self, k: int) -> None:
        """Node k loses its network link (its hub port goes down)."""
        self._check(k)
        network.set_link(self.layout, k, up=False)

    def heal(self, k: int) -> None:
        self._check(k)
        network.set_link(self.layout, k, up=True)

    def link_is_up(self, k: int) -> bool:
        self._check(k)
        return network.link_is_up(self.layout, k)

    def shape(self, k: int, delay_ms: float = 0.0, rate_mbit: float | None = None) -> None:
        """Delay and/or limit node k's link both ways (see network.shape)."""
        self._check(k)
        network.shape(self.layout, k, delay_ms, rate_mbit)

    def unshape(self, k: int) -> None:
        self._check(k)
        network.unshape(self.layout, k)

    def bandwidth(self, source: int, target: int, nbytes: int = 32 << 20) -> float:
        """Bytes per second over TCP from node ``source`` to node ``target`` (measured)."""
        return measure.bandwidth(self, source, target, nbytes)

    def _check(self, k: int) -> None:
        if k not in self.numbers:
            raise BadRequest(f"node {k}: no such node (the cluster has 1 to {self.nodes})")

    def _namespaces(self, k: int) -> set[NamespaceId]:
        return node_namespaces(self.layout, k)


def node_namespaces(layout: Layout, k: int) -> set[NamespaceId]:
    found = (namespace_id(layout.netns_file(k)), namespace_id(layout.mount_ns_file(k)))
    return {ns for ns in found if ns is not None}


@contextmanager
def machine_lock() -> Iterator[None]:
    """Clusters are built and removed one at a time on a machine (they share a mount)."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove(layout: Layout) -> None:
    """Everything of the cluster gone: processes, mounts, namespaces, links.

    Safe on a half-built or already removed cluster; every step is tried, the
    first failure is raised at the end.
    """
    with machine_lock():
        remove_unlocked(layout)


def remove_unlocked(layout: Layout) -> None:
    numbers = sorted(set(network.node_numbers(layout)) | set(layout.nodes_of_directory()))
    namespaces: set[NamespaceId] = set()
    for k in numbers:
        namespaces |= node_namespaces(layout, k)
    failures: list[ClusterError] = []
    for step in (
        lambda: kill_all(namespaces),
        lambda: mounts.remove(layout),
        lambda: network.remove(layout),
        lambda: cpu_limit.remove(layout),
    ):
        try:
            step()
        except ClusterError as e:
            failures.append(e)
    if failures:
        raise failures[0]


def existing_clusters() -> list[str]:
    """Names of the test clusters that have anything left on this machine."""
    names = set()
    if BASE_DIR.is_dir():
        names |= {p.name for p in BASE_DIR.iterdir() if p.is_dir()}
    for ns in network.existing_netns():
        if ns.endswith("-hub"):
            names.add(ns.removesuffix("-hub"))
    return sorted(names)


def owner_pid(name: str) -> int | None:
    """The pid that brought cluster ``name`` up, if recorded."""
    try:
        text = (Layout(name).directory / OWNER_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def check_installation_visible() -> None:
    """The nodes run this installation's mosixd: it must not lie in a directory they replace."""
    import mosix

    for path in (os.path.abspath(sys.prefix), os.path.realpath(mosix.__file__)):
        inside = private_to_nodes(path)
        if inside is not None:
            raise ClusterError(
                f"mosix is installed under {inside} ({path}), which every node replaces with "
                f"its own: install it elsewhere (e.g. a virtual environment under /var/tmp)"
            )
