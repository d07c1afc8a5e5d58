"""The ``[cluster]`` section of the agent's configuration.

[cluster]
secret_file = "/etc/mosix/cluster.secret"  # required when the map lists other nodes;
                                           # mode 0600 or stricter, not empty
port = 2490              # TCP port every agent listens on
load_interval = 1.0      # seconds between load reports
dead_after = 6.0         # seconds without a report before a node counts as down
balance_interval = 1.0   # seconds between automatic balancing rounds (0: no balancing)
fast_path = true         # dynamic programs away forward their calls from the preload shim
                         # over a direct channel (faster); false: through the copy's
                         # supervisor, as static programs do
precopy_rounds = 8       # live migration: at most this many rounds of the pages a process
                         # wrote while its memory was copied, before it is stopped for
                         # the rest; 0: stopped for the whole copy
compress = "auto"        # a migration image compressed (zstd) on its way: "on", "off", or
                         # "auto": on to a node whose link the previous image sent there
                         # measured slower than 300 Mbit/s (mosix.home_agent.link_rates)
lost_after = 30.0        # seconds a connection may go unanswered (a dead node, a cut
                         # network) before it is given up: a migrated process whose
                         # home and remote node are out of touch that long is lost
map = '''
1 10.77.0.1 3            # MOSIX map lines: first-node-number first-address count
'''
[[cluster.node]]         # explicit entries, combined with the map
number = 4
address = "10.77.0.4"
name = "node4"           # optional
partition = 1            # optional
classes = [1, 5]         # optional: the -G{class} values of processes from other
                         # partitions this node takes (default: every class from 1 up)

Errors are :class:`SettingsError` with one line naming the key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mosix.cluster.nodemap import MAX_NODE, MapError, Node, NodeMap, ipv4

DEFAULT_PORT = 2490
DEFAULT_LOAD_INTERVAL = 1.0
DEFAULT_DEAD_AFTER = 6.0
DEFAULT_BALANCE_INTERVAL = 1.0
NUMBER = (int, float)
# the keys of [cluster] and their TOML types (ranges are checked in parse_cluster)
KEYS: dict[str, type | tuple[type, ...]] = {
    "secret_file": str,
    "port": int,
    "load_interval": NUMBER,
    "dead_after": NUMBER,
    "lost_after": NUMBER,
    "balance_interval": NUMBER,
    "fast_path": bool,
    "precopy_rounds": int,
    "compress": str,
    "map": str,
    "node": list,
}
DEFAULT_LOST_AFTER = 30.0
DEFAULT_PRECOPY_ROUNDS = 8
MAX_PRECOPY_ROUNDS = 64  # mosix-ckpt -P's limit
COMPRESS_CHOICES = ("auto", "on", "off")
MIN_LOST_AFTER = 1.0  # TCP needs a few retransmissions' time
NODE_KEYS = {"number", "address", "name", "partition", "classes"}


class SettingsError(ValueError):
    """A bad [cluster] setting: one line naming the key and what is wrong."""


@dataclass(frozen=True)
class ClusterConfig:
    own: int  # this node's number ([node] number)
    nodes: NodeMap
    secret: bytes | None  # None only when the map lists no other node
    port: int = DEFAULT_PORT
    load_interval: float = DEFAULT_LOAD_INTERVAL
    dead_after: float = DEFAULT_DEAD_AFTER
    lost_after: float = DEFAULT_LOST_AFTER
    balance_interval: float = DEFAULT_BALANCE_INTERVAL  # 0: no automatic balancing
    fast_path: bool = True  # the shim's direct channel for migrated dynamic programs
    precopy_rounds: int = DEFAULT_PRECOPY_ROUNDS  # 0: stop-and-copy migrations
    compress: str = "auto"  # images on the wire: auto (on slow links), on, off

    @property
    def me(self) -> Node:
        node = self.nodes.by_number(self.own)
        assert node is not None  # parse_cluster checks it
        return node

    def others(self) -> list[Node]:
        return [n for n in self.nodes if n.number != self.own]


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_cluster(body: Mapping[str, Any], own: int) -> ClusterConfig:
    """The [cluster] table of the TOML file, for node number ``own``."""
    for key in body:
        if key not in KEYS:
            raise SettingsError(f"unknown key cluster.{key}")
    port = body.get("port", DEFAULT_PORT)
    if not is_int(port):
        raise SettingsError("cluster.port must be an integer")
    if not 1 <= port <= 65535:
        raise SettingsError(f"cluster.port {port} is out of range (1-65535)")
    interval = positive_number(body, "load_interval", DEFAULT_LOAD_INTERVAL)
    dead_after = positive_number(body, "dead_after", DEFAULT_DEAD_AFTER)
    if dead_after <= interval:
        raise SettingsError("cluster.dead_after must be longer than cluster.load_interval")
    lost_after = positive_number(body, "lost_after", DEFAULT_LOST_AFTER)
    if lost_after < MIN_LOST_AFTER:
        raise SettingsError(f"cluster.lost_after must be at least {MIN_LOST_AFTER:g} s")
    fast_path = body.get("fast_path", True)
    if not isinstance(fast_path, bool):
        raise SettingsError("cluster.fast_path must be true or false")
    rounds = body.get("precopy_rounds", DEFAULT_PRECOPY_ROUNDS)
    if not is_int(rounds) or not 0 <= rounds <= MAX_PRECOPY_ROUNDS:
        raise SettingsError(
            f"cluster.precopy_rounds must be an integer from 0 to {MAX_PRECOPY_ROUNDS}"
        )
    compress = body.get("compress", "auto")
    if compress not in COMPRESS_CHOICES:
        raise SettingsError('cluster.compress must be "auto", "on" or "off"')
    balance = body.get("balance_interval", DEFAULT_BALANCE_INTERVAL)
    if not is_number(balance) or not 0 <= balance < 86400:
        raise SettingsError(
            "cluster.balance_interval must be a number of seconds (0: no balancing, under a day)"
        )
    text = body.get("map", "")
    if not isinstance(text, str):
        raise SettingsError("cluster.map must be a string of map lines")
    explicit = node_entries(body.get("node", []))
    try:
        nodes = NodeMap.parse(text, explicit)
    except MapError as e:
        raise SettingsError(f"cluster.map: {e}") from None
    if own not in nodes:
        raise SettingsError(f"cluster.map: this node (node.number = {own}) is not in the map")
    secret_file = body.get("secret_file")
    if secret_file is not None and not isinstance(secret_file, str):
        raise SettingsError("cluster.secret_file must be a string")
    secret = None
    if secret_file is not None:
        secret = read_secret(secret_file)
    elif len(nodes) > 1:
        raise SettingsError("cluster.secret_file is required when the map lists other nodes")
    return ClusterConfig(
        own,
        nodes,
        secret,
        port,
        float(interval),
        float(dead_after),
        lost_after=float(lost_after),
        balance_interval=float(balance),
        fast_path=fast_path,
        precopy_rounds=rounds,
        compress=compress,
    )


def positive_number(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if not is_number(value):
        raise SettingsError(f"cluster.{key} must be a number (seconds)")
    if not 0 < value < 86400:
        raise SettingsError(f"cluster.{key} {value} is out of range (more than 0 s, under a day)")
    return float(value)


def node_entries(entries: object) -> list[Node]:
    """The [[cluster.node]] array of tables."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SettingsError("cluster.node must be an array of tables ([[cluster.node]])")
    return [node_entry(entry, i) for i, entry in enumerate(entries, 1)]


def node_entry(entry: Mapping[str, Any], index: int) -> Node:
    where = f"cluster.node entry {index}"
    for key in entry:
        if key not in NODE_KEYS:
            raise SettingsError(f"{where}: unknown key {key}")
    for key in ("number", "address"):
        if key not in entry:
            raise SettingsError(f"{where}: {key} is missing")
    number, address = entry["number"], entry["address"]
    if not is_int(number) or not 1 <= number <= MAX_NODE:
        raise SettingsError(f"{where}: number must be an integer in 1..{MAX_NODE}")
    canonical = ipv4(address) if isinstance(address, str) else None
    if canonical is None:
        raise SettingsError(f"{where}: address {address!r} is not an IPv4 address")
    name = entry.get("name")
    if name is not None and (
        not isinstance(name, str)
        or not name
        or any(c.isspace() for c in name)
        or name.isdigit()
        or ipv4(name) is not None
    ):
        raise SettingsError(
            f"{where}: name {name!r} must be a word that is neither a number nor an address"
        )
    partition = entry.get("partition", 1)
    if not is_int(partition) or partition < 1:
        raise SettingsError(f"{where}: partition must be a positive integer")
    classes = entry.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(is_int(c) and c >= 1 for c in classes):
            raise SettingsError(f"{where}: classes must be a list of positive integers")
        classes = frozenset(classes)
    return Node(number, canonical, name, partition, classes)


def read_secret(path: str) -> bytes:
    """The shared secret; refused when others may read or change the file, or it is empty."""
    if not os.path.isabs(path):
        raise SettingsError(f"cluster.secret_file {path!r} must be an absolute path")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
    except OSError as e:
        raise SettingsError(f"cluster.secret_file {path}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SettingsError(f"cluster.secret_file {path}: not a regular file")
        if info.st_mode & 0o066:
            raise SettingsError(
                f"cluster.secret_file {path}: readable or writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}; use chmod 600)"
            )
        secret = os.read(fd, 1 << 16).strip()
    except OSError as e:
        raise SettingsError(f"cluster.secret_file {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    if not secret:
        raise SettingsError(f"cluster.secret_file {path}: empty")
    return secret
