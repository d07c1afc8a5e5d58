"""The agent's TOML configuration (all keys optional).

[node]
number = 1              # this node's number in the cluster
name = "node1"          # defaults to the host name
speed = 1.0             # relative CPU speed, sent in load vectors
[queue]
default_priority = 50   # -q / -Q without a number
slots = 2               # queued jobs that may run at once (default: CPUs)
[paths]
run_dir = "/run/mosix"  # control socket, lock, log and state
freeze_dir = "/var/mosix/freeze"  # frozen images (root; a user agent: run_dir/freeze)
[checkpoint]
minute_seconds = 60     # length of an -A minute (tests use less)
[freeze]                # automatic freezing (mosix/home_agent/auto_freeze.py)
max_running = 0         # more of this node's MOSIX processes running at home: the newest
                        # is frozen; fewer: the first frozen so continues (0: off)
interval = 1.0          # seconds between looks
[limits]                # what one client may take (defaults: mosix/home_agent/limits.py)
connections = 8192      # control connections at once (fewer if the descriptor limit says so)
connections_per_user = 2048
queued_per_user = 1000
state_per_user = 16777216     # characters of queued and registered commands kept per user
first_frame_seconds = 10      # a new connection must send its request by then
frame_seconds = 10            # a frame, once begun, must arrive whole by then
inflight_per_user = 67108864  # bytes of one user's frames being received at once
[site]
mosrun_group = "mos"    # MOSIX work (mosrun, -q, -E/-M) starts only for this effective group
                        # or root: the administrator's wrapper (mosix/home_agent/site_group.py)
[private]               # mosrun -X: the most MiB one process's private files take together
home_mb = 0             # at home: a write beyond fails with ENOSPC (0: half the memory)
cluster_mb = 0          # on a node of this node's partition: beyond, the process comes home
grid_mb = 0             # on a node of another partition (-G): likewise (0: only home_mb holds;
                        # above home_mb: home_mb) (mosix/home_agent/private_limits.py)
[cluster]               # absent: a one-node cluster (mosix/cluster/settings.py)
"""

from __future__ import annotations

import grp
import tomllib
from pathlib import Path
from typing import Any

from mosix.cluster.settings import KEYS as CLUSTER_KEYS
from mosix.cluster.settings import SettingsError, parse_cluster
from mosix.home_agent.agent_config import AgentConfig
from mosix.home_agent.limits import AgentLimits
from mosix.private_limits import MAX_MB as PRIVATE_MAX_MB
from mosix.private_limits import PrivateLimits

Number = (int, float)
KNOWN: dict[str, dict[str, type | tuple[type, ...]]] = {
    "node": {"number": int, "name": str, "speed": Number},
    "queue": {"default_priority": int, "slots": int},
    "paths": {"run_dir": str, "freeze_dir": str},
    "checkpoint": {"minute_seconds": Number},
    "freeze": {"max_running": int, "interval": Number},
    "limits": {
        "connections": int,
        "connections_per_user": int,
        "queued_per_user": int,
        "state_per_user": int,
        "first_frame_seconds": Number,
        "frame_seconds": Number,
        "inflight_per_user": int,
    },
    "site": {"mosrun_group": str},
    "private": {"home_mb": int, "cluster_mb": int, "grid_mb": int},
    # ranges, the map and the [[cluster.node]] entries: mosix.cluster.settings
    "cluster": CLUSTER_KEYS,
}
AT_LEAST_ONE = {("node", "number"), ("queue", "slots")} | {
    ("limits", key) for key in ("connections", "connections_per_user", "queued_per_user")
}
POSITIVE = {("node", "speed"), ("checkpoint", "minute_seconds"), ("freeze", "interval")} | {
    ("limits", key) for key in ("first_frame_seconds", "frame_seconds")
}
KIND_NAMES = {int: "an integer", str: "a string", list: "an array of tables", bool: "true or false"}


class ConfigError(Exception):
    pass


def check_value(section: str, key: str, value: Any) -> str | None:
    """What is wrong with ``section.key = value`` (None: nothing)."""
    kind = KNOWN[section][key]
    if kind is bool:
        return None if isinstance(value, bool) else "must be " + KIND_NAMES[bool]
    if not isinstance(value, kind) or isinstance(value, bool):
        return "must be " + ("a number" if isinstance(kind, tuple) else KIND_NAMES[kind])
    if isinstance(value, str):
        if not value and key != "map":
            return "must not be empty"
        if key in ("run_dir", "freeze_dir") and not value.startswith("/"):
            return "must be an absolute path"
        return None
    if section == "cluster" or not isinstance(value, int | float):
        return None  # ranges, the map, [[cluster.node]]: mosix.cluster.settings
    low = 1 if (section, key) in AT_LEAST_ONE else 0
    if value < low or ((section, key) in POSITIVE and value <= 0):
        return "is out of range"
    if section == "private" and value > PRIVATE_MAX_MB:
        return "is out of range"
    return None


def read_config(path: Path) -> tuple[AgentConfig, Path | None]:
    """The agent configuration in ``path`` and the run directory it names (if any)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    values: dict[str, dict[str, Any]] = {}
    for section, body in data.items():
        if section not in KNOWN or not isinstance(body, dict):
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, value in body.items():
            if key not in KNOWN[section]:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            wrong = check_value(section, key, value)
            if wrong is not None:
                raise ConfigError(f"{path}: {section}.{key} {wrong}")
        values[section] = body
    config = AgentConfig()
    node, queue = values.get("node", {}), values.get("queue", {})
    config.node = node.get("number", config.node)
    config.name = node.get("name", config.name)
    config.speed = float(node.get("speed", config.speed))
    config.default_priority = queue.get("default_priority", config.default_priority)
    config.queue_slots = queue.get("slots", config.queue_slots)
    config.checkpoint_minute = float(
        values.get("checkpoint", {}).get("minute_seconds", config.checkpoint_minute)
    )
    limits = values.get("limits", {})
    config.limits = AgentLimits(
        **{key: type(getattr(AgentLimits, key))(value) for key, value in limits.items()}
    )
    if "cluster" in values:
        try:
            config.cluster = parse_cluster(values["cluster"], config.node)
        except SettingsError as e:
            raise ConfigError(f"{path}: {e}") from None
    config.freeze_dir = values.get("paths", {}).get("freeze_dir", config.freeze_dir)
    freeze = values.get("freeze", {})
    config.freeze_max_running = freeze.get("max_running", config.freeze_max_running)
    config.freeze_interval = float(freeze.get("interval", config.freeze_interval))
    group = values.get("site", {}).get("mosrun_group")
    if group is not None:
        try:
            config.mosrun_gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError(f"{path}: site.mosrun_group: no group '{group}'") from None
        config.mosrun_group = group
    config.private = PrivateLimits(**values.get("private", {}))
    run_dir = values.get("paths", {}).get("run_dir")
    return config, Path(run_dir) if run_dir else None
