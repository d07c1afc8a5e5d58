"""This node as a host: the cluster's requests about guests go to their handlers.

Built by the node (mosix.node.agent) when its configuration has a [cluster]:
migration offers, images, channels and returns go to the guests
(mosix.remote_agent.inbound), checkpoint requests of their homes to
mosix.remote_agent.guest_checkpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mosix.cluster.peers import Cluster
from mosix.protocol import (
    BatchOffer,
    BringHome,
    MigrateChannel,
    MigrateCheckpoint,
    MigrateImage,
    MigrateOffer,
)
from mosix.remote_agent.batch_host import HostedMosruns, host_batch
from mosix.remote_agent.guest_checkpoint import GuestCheckpoints
from mosix.remote_agent.inbound import Guests
from mosix.sysinfo import node_facts


class Hosting:
    def __init__(self, cluster: Cluster, on_change: Callable[[], None]) -> None:
        self.guests = Guests(
            lambda: node_facts.memory_mb()[1], on_change, cluster.admin, cluster.me
        )
        cluster.on(MigrateOffer, self.guests.offer)
        cluster.on(MigrateImage, self.guests.image)
        cluster.on(MigrateChannel, self.guests.channel)
        cluster.on(BringHome, self.guests.bring_home)
        cluster.on(MigrateCheckpoint, GuestCheckpoints(self.guests).checkpoint)
        self.mosruns = HostedMosruns()  # -M jobs' mosruns: this node's gate lets them in
        # mosrun -E/-M from other nodes
        cluster.on(BatchOffer, functools.partial(host_batch, mosruns=self.mosruns))
