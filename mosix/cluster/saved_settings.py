"""mosctl's settings in the agent's state file (mosix.home_agent.state saves it).

stay, lstay, block, isolate and setspeed last across a restart of mosixd, as
the queue does: an administrator who blocked a node or set its speed does not
find it undone by a restart.  The speed is kept only once ``setspeed`` set it
(until then the configuration's speed holds, also after a change of it).
"""

from __future__ import annotations

import math
from typing import Any

from mosix.cluster.admin import SETTINGS
from mosix.cluster.peers import Cluster

SPEED = "speed"


class SavedSettings:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def snapshot(self) -> dict[str, object]:
        admin = self.cluster.admin
        saved: dict[str, object] = {name: getattr(admin, name) for name in SETTINGS}
        if admin.speed is not None:
            saved[SPEED] = admin.speed
        return saved

    def restore(self, saved: Any) -> None:
        """Take back a previous agent's settings (ValueError: malformed; nothing is
        changed then)."""
        if not isinstance(saved, dict):
            raise ValueError("the node's settings are not a map")
        flags = {name: saved.get(name, False) for name in SETTINGS}
        if not all(isinstance(value, bool) for value in flags.values()):
            raise ValueError("a node setting that is not true or false")
        speed = saved.get(SPEED)
        if speed is not None and not (
            isinstance(speed, int | float) and math.isfinite(speed) and speed > 0
        ):
            raise ValueError(f"a bad saved speed: {speed!r}")
        cluster = self.cluster
        for name in ("stay", "lstay", "block"):
            setattr(cluster.admin, name, flags[name])
        if flags["isolated"]:
            cluster.isolate()
        if speed is not None:
            cluster.set_speed(float(speed))
