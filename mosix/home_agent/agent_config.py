"""The node agent's settings (read from mosixd.toml by mosix.node.config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mosix.cluster.settings import ClusterConfig
from mosix.home_agent.limits import AgentLimits
from mosix.private_limits import PrivateLimits
from mosix.sysinfo import node_facts


@dataclass
class AgentConfig:
    node: int = 1
    name: str = field(default_factory=node_facts.host_name)
    default_priority: int = 50
    queue_slots: int = field(default_factory=node_facts.cpu_count)
    checkpoint_minute: float = 60.0  # seconds in an -A minute (shorter in tests)
    freeze_dir: str = ""  # the node's freezing space ("": mosix.home_agent.freezing's default)
    freeze_max_running: int = 0  # automatic freezing above this many running (0: off)
    freeze_interval: float = 1.0  # seconds between automatic freezing's looks
    speed: float = 1.0  # relative CPU speed ([node] speed), for load vectors
    cluster: ClusterConfig | None = None  # None: a one-node cluster
    limits: AgentLimits = field(default_factory=AgentLimits)
    mosrun_group: str = ""  # [site] mosrun_group: MOSIX work starts only from it ("": anyone)
    mosrun_gid: int = -1
    private: PrivateLimits = field(default_factory=PrivateLimits)  # [private]: mosrun -X
