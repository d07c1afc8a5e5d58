"""mosctl's orders to its node (NodeControl, root only): MOSIX's administration verbs.

The settings live in the cluster layer (mosix.cluster.admin: the balancer, placement
and the host side read them there); ``expel`` asks the host side (its guests go
home), ``bring`` the home side (its processes come home).  Here, because both sides
meet only in mosix.node.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from mosix.cluster.peers import Cluster
from mosix.home_agent.cluster_services import ClusterServices
from mosix.home_agent.connection import Peer
from mosix.home_agent.refusal import Refusal
from mosix.protocol import NODE_VERBS, Done, NodeControl
from mosix.remote_agent.inbound import Guests

log = logging.getLogger("mosixd")
SPEED_MAX = 1e6
SWITCHES = {  # verb: (setting, value)
    "stay": ("stay", True),
    "nostay": ("stay", False),
    "lstay": ("lstay", True),
    "nolstay": ("lstay", False),
    "block": ("block", True),
    "noblock": ("block", False),
}


class Administration:
    def __init__(
        self,
        cluster: Cluster | None,
        services: ClusterServices | None,
        guests: Guests | None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.cluster = cluster  # None (and the others too): a one-node cluster
        self.services = services
        self.guests = guests
        self.on_change = on_change  # a setting changed: the state file is saved

    def counts(self) -> tuple[int, int]:
        """(guests running here, processes of this home running elsewhere)."""
        guests = self.guests.count() if self.guests is not None else 0
        away = len(self.services.migrations.away) if self.services is not None else 0
        return guests, away

    async def order(self, peer: Peer, msg: NodeControl) -> Done:
        verb = msg.verb
        if verb not in NODE_VERBS:
            raise Refusal(f"'{verb}' is not one of {', '.join(NODE_VERBS)}")
        if not peer.is_root:
            raise Refusal(f"{verb}: only root may do this")
        cluster = self.cluster
        if cluster is None or self.services is None or self.guests is None:
            raise Refusal(f"{verb}: this node is not part of a cluster")
        log.info("mosctl %s (pid %d)", verb, peer.pid)
        if verb in SWITCHES:
            setting, value = SWITCHES[verb]
            setattr(cluster.admin, setting, value)
            self.on_change()
            return Done()
        match verb:
            case "expel":
                return Done(count=await self.guests.expel())
            case "bring":
                return Done(count=await self.services.bring_all())
            case "isolate":
                guests, away = self.counts()
                if guests:
                    raise Refusal(f"isolate: {guests} guest(s) run here (mosctl expel first)")
                if away:
                    raise Refusal(f"isolate: {away} process(es) run elsewhere (mosctl bring first)")
                cluster.isolate()
            case "rejoin":
                cluster.rejoin()
            case "setspeed":
                if not (math.isfinite(msg.speed) and 0 < msg.speed <= SPEED_MAX):
                    raise Refusal(f"setspeed: {msg.speed:g}: must be above 0 and at most 1000000")
                cluster.set_speed(msg.speed)
        self.on_change()  # isolate, rejoin, setspeed (saved); expel, bring: nothing to save
        return Done()
