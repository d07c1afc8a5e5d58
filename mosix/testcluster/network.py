"""The cluster's network: a hub namespace with a bridge, one veth pair per node.

Node k's namespace holds ``eth0`` (10.77.0.k/24) and ``lo``; the other end of
the pair, ``nk``, sits in the hub and is attached to the bridge.  Cutting a
node's link sets ``nk`` down: the node keeps running but reaches no one.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import pyroute2
from pyroute2 import NetlinkError

from mosix.testcluster.errors import BadRequest, ClusterError
from mosix.testcluster.layout import BRIDGE, NODE_INTERFACE, PREFIX_LENGTH, Layout


@contextmanager
def netlink_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (NetlinkError, OSError) as e:
        reason = e.args[1] if isinstance(e, NetlinkError) and len(e.args) > 1 else str(e)
        raise ClusterError(f"{what}: {reason}") from None


def existing_netns() -> list[str]:
    return list(pyroute2.netns.listnetns())


def create(layout: Layout, nodes: int) -> None:
    """The hub with its bridge and nodes 1..nodes linked to it, addresses set, links up."""
    route = pyroute2
    with netlink_errors(f"creating network namespace {layout.hub}"):
        route.netns.create(layout.hub)
    with route.NetNS(layout.hub) as hub, netlink_errors(f"creating bridge in {layout.hub}"):
        hub.link("add", ifname=BRIDGE, kind="bridge")
        bridge = hub.link_lookup(ifname=BRIDGE)[0]
        hub.link("set", index=bridge, state="up")
    for k in range(1, nodes + 1):
        add_node(layout, k)


def add_node(layout: Layout, k: int) -> None:
    route = pyroute2
    name, port = layout.netns(k), layout.hub_interface(k)
    with netlink_errors(f"creating network namespace {name}"):
        route.netns.create(name)
    with route.NetNS(layout.hub) as hub, netlink_errors(f"linking {name} to {layout.hub}"):
        hub.link(
            "add", ifname=port, kind="veth", peer={"ifname": NODE_INTERFACE, "net_ns_fd": name}
        )
        index = hub.link_lookup(ifname=port)[0]
        hub.link("set", index=index, master=hub.link_lookup(ifname=BRIDGE)[0], state="up")
    with route.NetNS(name) as node, netlink_errors(f"configuring {name}"):
        eth = node.link_lookup(ifname=NODE_INTERFACE)[0]
        node.addr("add", index=eth, address=layout.address(k), prefixlen=PREFIX_LENGTH)
        node.link("set", index=eth, state="up")
        node.link("set", index=node.link_lookup(ifname="lo")[0], state="up")


def remove(layout: Layout) -> None:
    """Delete every network namespace of the cluster (their veths go with them)."""
    route = pyroute2
    present = existing_netns()
    names = [layout.netns(k) for k in layout.nodes_of_netns(present)]
    if layout.hub in present:
        names.append(layout.hub)
    for name in names:
        with netlink_errors(f"removing network namespace {name}"):
            route.netns.remove(name)


def node_numbers(layout: Layout) -> list[int]:
    return layout.nodes_of_netns(existing_netns())


def set_link(layout: Layout, k: int, up: bool) -> None:
    """Node k's hub port up (traffic flows) or down (the node is cut off)."""
    route = pyroute2
    with route.NetNS(layout.hub) as hub, netlink_errors(f"node {k}: link"):
        found = hub.link_lookup(ifname=layout.hub_interface(k))
        if not found:
            raise ClusterError(f"node {k}: no link in {layout.hub}")
        hub.link("set", index=found[0], state="up" if up else "down")


def link_is_up(layout: Layout, k: int) -> bool:
    route = pyroute2
    with route.NetNS(layout.hub) as hub, netlink_errors(f"node {k}: link"):
        found = hub.link_lookup(ifname=layout.hub_interface(k))
        if not found:
            return False
        (link,) = hub.get_links(found[0])
        return bool(link["flags"] & 1)  # IFF_UP


def shape(layout: Layout, k: int, delay_ms: float = 0.0, rate_mbit: float | None = None) -> None:
    """Limit (tbf) and/or delay (netem) traffic on node k's link, both ways.

    The qdisc goes on both ends of the link, so between two shaped nodes the
    delays add up.  netem is not in every kernel: a delay then fails with a
    clear error, a rate alone does not need it.  ``unshape`` removes either.
    """
    route = pyroute2
    settings: dict[str, int | str]
    if delay_ms:
        kind, settings = "netem", {"delay": int(delay_ms * 1000)}
        if rate_mbit is not None:
            settings["rate"] = f"{rate_mbit}mbit"
    elif rate_mbit is not None:
        # burst: at least one 10 ms slice of the rate (and a few full packets)
        burst = max(int(rate_mbit * 1e6 / 8 / 100), 16 * 1514)
        kind, settings = "tbf", {"rate": f"{rate_mbit}mbit", "burst": burst, "latency": "200ms"}
    else:
        raise BadRequest(f"node {k}: shape wants a delay or a rate")
    for ns, interface in _link_ends(layout, k):
        with route.NetNS(ns) as where, netlink_errors(f"node {k}: {kind} on {interface}"):
            index = where.link_lookup(ifname=interface)[0]
            try:
                where.tc("replace", kind, index, **settings)
            except route.NetlinkError as e:
                if e.code == errno.ENOENT:
                    raise ClusterError(f"node {k}: this kernel has no {kind} qdisc") from None
                raise


def unshape(layout: Layout, k: int) -> None:
    route = pyroute2
    for ns, interface in _link_ends(layout, k):
        with route.NetNS(ns) as where, netlink_errors(f"node {k}: unshaping {interface}"):
            index = where.link_lookup(ifname=interface)[0]
            for qdisc in where.get_qdiscs(index=index):
                kind = qdisc.get_attr("TCA_KIND")
                if kind in ("netem", "tbf"):
                    where.tc("del", index=index, parent=qdisc["parent"])


def _link_ends(layout: Layout, k: int) -> list[tuple[str, str]]:
    return [(layout.hub, layout.hub_interface(k)), (layout.netns(k), NODE_INTERFACE)]
