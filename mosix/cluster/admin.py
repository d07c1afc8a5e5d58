"""This node's administrator's settings (``mosctl``), which the home and host sides obey.

- ``stay``: no automatic migration away from this node: neither this home's
  processes running here nor guests (their homes' balancers read it in this
  node's load vector);
- ``lstay``: this home's processes running here stay (guests may still go);
- ``block``: no guests: offers are refused, and other nodes' placement and
  balancing leave this node out (its load vector says so);
- ``isolated``: out of the cluster until ``rejoin``: no load reports either way,
  no connections to or from other nodes (they count it as down).

They, and a speed set by ``mosctl setspeed``, are kept in the agent's state
file (mosix.cluster.saved_settings) and survive a restart of the agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from mosix.protocol import LoadVector

SETTINGS = ("stay", "lstay", "block", "isolated")
ADVERTISED = ("stay", "block")  # what other nodes must know: in our load vector's extra
GUESTS = "guests"  # also there: how many guests run here (mosmon shows it)


@dataclass
class NodeAdmin:
    stay: bool = False
    lstay: bool = False
    block: bool = False
    isolated: bool = False
    speed: float | None = None  # set by mosctl setspeed (None: the configuration's)

    def in_force(self) -> list[str]:
        return [name for name in SETTINGS if getattr(self, name)]

    def advertised(self) -> dict[str, int]:
        return {name: 1 for name in ADVERTISED if getattr(self, name)}


def says(vector: LoadVector | None, setting: str) -> bool:
    """Whether a node's load vector says ``setting`` (one of ADVERTISED) is in force."""
    return vector is not None and bool(vector.extra.get(setting))


def guests_of(vector: LoadVector | None) -> int:
    """How many guests a node's load vector says run there (0: none, or not said)."""
    value = vector.extra.get(GUESTS) if vector is not None else None
    return value if isinstance(value, int) and value >= 0 else 0
