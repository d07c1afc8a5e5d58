"""Names and paths of one test cluster: namespaces, links, mounts, addresses.

Several clusters may exist at once (each test run uses its own name); the
default one, which users start with ``mosix-testcluster up``, is ``mosix``:
hub namespace ``mosix-hub``, node k in ``mosix-nodek`` at 10.77.0.k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mosix.testcluster.errors import BadRequest

DEFAULT_NAME = "mosix"
MAX_NODES = 250
BASE_DIR = Path("/run/mosix-testcluster")  # private mount holding every cluster's mounts
LOCK_FILE = Path("/run/lock/mosix-testcluster.lock")  # one cluster set up or removed at a time
NETNS_DIR = Path("/run/netns")  # where pyroute2 (like ip netns) keeps network namespaces
SUBNET = "10.77.0"
PREFIX_LENGTH = 24
BRIDGE = "br0"  # inside the hub namespace
NODE_INTERFACE = "eth0"  # inside each node namespace

# The node's own directories: where it sees them -> directory name on the host.
PRIVATE_DIRS = {"/tmp": "tmp", "/run/mosix": "run", "/etc/mosix": "etc"}


def private_to_nodes(path: str) -> str | None:
    """The private directory (a key of PRIVATE_DIRS) that hides ``path`` from the nodes."""
    for inside in PRIVATE_DIRS:
        if path == inside or path.startswith(inside + "/"):
            return inside
    return None


CONFIG_PATH = "/etc/mosix/mosixd.toml"  # mosixd's default configuration path
SECRET_PATH = "/etc/mosix/cluster.secret"
RUN_DIR = "/run/mosix"

_NAME = re.compile(r"[a-z][a-z0-9]{0,23}")


@dataclass(frozen=True)
class Layout:
    name: str = DEFAULT_NAME

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise BadRequest(
                f"cluster name {self.name!r}: want a lower-case letter, then up to 23 "
                "lower-case letters or digits"
            )

    @property
    def hub(self) -> str:
        return f"{self.name}-hub"

    @property
    def directory(self) -> Path:
        return BASE_DIR / self.name

    def netns(self, k: int) -> str:
        return f"{self.name}-node{k}"

    def netns_file(self, k: int) -> Path:
        return NETNS_DIR / self.netns(k)

    def mount_ns_file(self, k: int) -> Path:
        return self.directory / f"node{k}.mnt"

    def time_ns_file(self, k: int) -> Path:
        """Node k's time namespace (only with clock offsets: mosix.testcluster.clocks)."""
        return self.directory / f"node{k}.time"

    def node_dir(self, k: int) -> Path:
        return self.directory / f"node{k}"

    def private_dir(self, k: int, inside: str) -> Path:
        """The host's view of node k's private directory ``inside`` (a key of PRIVATE_DIRS)."""
        return self.node_dir(k) / PRIVATE_DIRS[inside]

    @staticmethod
    def address(k: int) -> str:
        return f"{SUBNET}.{k}"

    @staticmethod
    def node_name(k: int) -> str:
        return f"node{k}"

    @staticmethod
    def hub_interface(k: int) -> str:
        """The hub end of node k's veth pair (attached to the bridge)."""
        return f"n{k}"

    def nodes_of_netns(self, names: list[str]) -> list[int]:
        """Node numbers of this cluster among network namespace names."""
        return _numbers(rf"{re.escape(self.name)}-node([1-9][0-9]*)", names)

    def nodes_of_directory(self) -> list[int]:
        """Node numbers of this cluster that have something under its directory."""
        names = [p.name for p in self.directory.iterdir()] if self.directory.is_dir() else []
        return _numbers(r"node([1-9][0-9]*)(?:\.mnt)?", names)


def _numbers(pattern: str, names: list[str]) -> list[int]:
    compiled = re.compile(pattern)
    return sorted({int(m.group(1)) for n in names if (m := compiled.fullmatch(n))})


def check_node_count(nodes: int) -> None:
    if not 1 <= nodes <= MAX_NODES:
        raise BadRequest(f"{nodes} nodes: want 1 to {MAX_NODES}")
