"""A request that cannot be done, and the checks of who may ask what."""

from __future__ import annotations

from mosix.home_agent.connection import Peer
from mosix.sysinfo import proc_info

PATH_MAX = 4096


class Refusal(Exception):
    """A request that cannot be done; the text goes back to the client."""


def check_owner(peer: Peer, pid: int) -> int:
    """The real uid of ``pid``, which must be the caller's (or the caller root)."""
    uid = proc_info.real_uid(pid)
    if uid is None:
        raise Refusal(f"no process {pid}")
    if not peer.is_root and uid != peer.uid:
        raise Refusal(f"process {pid} belongs to another user")
    return uid


def visible(peer: Peer, uid: int) -> bool:
    return peer.is_root or uid == peer.uid
