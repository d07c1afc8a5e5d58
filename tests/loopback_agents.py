"""Moved to support/loopback_agents.py: kept as a re-export for test_cluster_frames_auth
(another branch is changing it now); remove once it imports from support."""

from support.loopback_agents import (
    LoopbackCluster,
    genuine_peer_is_accepted,
    log_of,
    logged,
    nodes_seen,
    open_as,
    outsider_answers,
    raw_peer,
    sees,
    write_secret,
)

__all__ = [
    "LoopbackCluster",
    "genuine_peer_is_accepted",
    "log_of",
    "logged",
    "nodes_seen",
    "open_as",
    "outsider_answers",
    "raw_peer",
    "sees",
    "write_secret",
]
