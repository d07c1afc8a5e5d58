"""The agent's TOML configuration (all keys optional).

[node]
number = 1              # this node's number in the cluster
name = "node1"          # defaults to the host name
[queue]
default_priority = 50   # -q / -Q without a number
slots = 2               # queued jobs that may run at once (default: CPUs)
[paths]
run_dir = "/run/mosix"  # control socket, lock, log and state
[checkpoint]
minute_seconds = 60     # length of an -A minute (tests use less)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from mosix.home_agent.server import AgentConfig

KNOWN = {
    "node": {"number": int, "name": str},
    "queue": {"default_priority": int, "slots": int},
    "paths": {"run_dir": str},
    "checkpoint": {"minute_seconds": (int, float)},
}


class ConfigError(Exception):
    pass


def read_config(path: Path) -> tuple[AgentConfig, Path | None]:
    """The agent configuration in ``path`` and the run directory it names (if any)."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    values: dict[str, dict[str, Any]] = {}
    for section, body in data.items():
        if section not in KNOWN or not isinstance(body, dict):
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, value in body.items():
            kind = KNOWN[section].get(key)
            if kind is None:
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            if not isinstance(value, kind) or isinstance(value, bool):
                name = "a number" if isinstance(kind, tuple) else kind.__name__
                raise ConfigError(f"{path}: {section}.{key} must be {name}")
            if value < (1 if key in ("number", "slots") else 0) or (
                key == "minute_seconds" and value <= 0
            ):
                raise ConfigError(f"{path}: {section}.{key} is out of range")
        values[section] = body
    config = AgentConfig()
    node, queue = values.get("node", {}), values.get("queue", {})
    config.node = node.get("number", config.node)
    config.name = node.get("name", config.name)
    config.default_priority = queue.get("default_priority", config.default_priority)
    config.queue_slots = queue.get("slots", config.queue_slots)
    config.checkpoint_minute = float(
        values.get("checkpoint", {}).get("minute_seconds", config.checkpoint_minute)
    )
    run_dir = values.get("paths", {}).get("run_dir")
    return config, Path(run_dir) if run_dir else None
