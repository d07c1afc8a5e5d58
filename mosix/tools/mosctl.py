"""mosctl: node administration and status.

The verbs are MOSIX's: ``stay``/``nostay``, ``lstay``/``nolstay``, ``block``/``noblock``,
``expel``, ``bring``, ``isolate``/``rejoin`` and ``setspeed`` change this node (root
only, as in MOSIX); ``status``, ``localstatus``, ``rstatus`` and ``whois`` tell (anyone).
"""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from mosix.display import shown
from mosix.protocol import (
    Done,
    GetStatus,
    ListNodes,
    NodeControl,
    NodeFacts,
    NodeLoad,
    Nodes,
    Shutdown,
    Status,
)
from mosix.tools.common import JsonFlag, app, ask, fail, run
from mosix.tools.json_output import emit, node_record, status_record

cli = app(
    "mosctl",
    "Administer this MOSIX node and show its status. The settings (stay, lstay, block, "
    "isolate) and a speed set by setspeed survive a restart of the node agent.",
)
NOT_IN_CLUSTER = "this node is not part of a cluster (no [cluster] in its configuration)"


def this_node() -> NodeFacts:
    facts = ask("mosctl", GetStatus(), Status).facts
    assert facts is not None
    return facts


def show_status(as_json: bool) -> None:
    facts = this_node()
    if as_json:
        emit(status_record(facts))
        return
    load = " ".join(f"{x:.2f}" for x in facts.load)
    print(f"node:       {facts.node} ({shown(facts.name)})")
    print(f"cpus:       {facts.cpus} at {facts.speed_mhz:.0f} MHz, speed {facts.speed:g}")
    print(f"load:       {load}")
    print(f"memory:     {facts.mem_free_mb} MB free of {facts.mem_total_mb} MB")
    print(
        f"queue:      {facts.queued} queued, {facts.queue_running} of {facts.queue_slots} "
        "slots running"
    )
    print(
        f"processes:  {facts.processes} MOSIX processes, {facts.away} away, {facts.guests} guests"
    )
    if facts.balance_rounds >= 0:
        print(f"balancing:  {facts.balance_rounds} rounds, {facts.balance_moves} moves")
    else:
        print("balancing:  off")
    print(f"settings:   {' '.join(facts.settings) or '-'}")


@cli.command("status")
def status(as_json: JsonFlag = False) -> None:
    """Show this node's status: CPUs, speed, load, memory, queue, settings."""
    show_status(as_json)


@cli.command("localstatus")
def localstatus(as_json: JsonFlag = False) -> None:
    """Show this node's status as its agent knows it, asking no other node."""
    show_status(as_json)


def cluster_nodes() -> list[NodeLoad]:
    return ask("mosctl", ListNodes(), Nodes).nodes


@cli.command("rstatus")
def rstatus(as_json: JsonFlag = False) -> None:
    """Show the nodes of the cluster: up or down, CPUs, speed, load, memory."""
    nodes = cluster_nodes()
    if as_json:
        emit([node_record(n) for n in nodes])
        return
    if not nodes:
        print(NOT_IN_CLUSTER)
        return
    print(
        f"{'NODE':>5} {'ADDRESS':<15} {'NAME':<12} {'PART':>4} {'STATE':<5} {'CPUS':>4} "
        f"{'SPEED':>6} {'LOAD':>6} {'FREE_MB':>8} {'TOTAL_MB':>8} {'PROCS':>5}  SETTINGS"
    )
    for n in nodes:
        state = "up" if n.alive else "down"
        ident = f"{n.number:>5} {shown(n.address):<15} {shown(n.name) or '-':<12}"
        if n.age is None and not n.alive:
            print(f"{ident} {n.partition:>4} {state:<5}")
            continue
        print(
            f"{ident} {n.partition:>4} {state:<5} "
            f"{n.cpus:>4} {n.speed:>6.2f} {n.load:>6.2f} {n.free_mb:>8} {n.total_mb:>8} "
            f"{n.procs:>5}  {' '.join(n.settings) or '-'}"
        )


def find_node(nodes: list[NodeLoad], which: str) -> NodeLoad | None:
    """The node named by number, IPv4 address or host name (looked up if not in the map)."""
    for n in nodes:
        if which in (str(n.number), n.address) or (n.name and which == n.name):
            return n
    if which.isdigit():
        return None
    try:
        address = socket.gethostbyname(which)
    except (OSError, UnicodeError):
        return None
    return next((n for n in nodes if n.address == address), None)


@cli.command("whois")
def whois(
    which: Annotated[
        str, typer.Argument(help="node number, IPv4 address or host name (default: this node)")
    ] = "",
) -> None:
    """Show a node's number, name and address (from any one of them)."""
    nodes = cluster_nodes()
    if not nodes:
        fail("mosctl", f"whois: {NOT_IN_CLUSTER}", 1)
    if not which:
        which = str(this_node().node)
    node = find_node(nodes, which)
    if node is None:
        fail("mosctl", f"whois: {which}: no such node in this cluster", 1)
    print(f"{node.number} {shown(node.name) or '-'} {node.address}")


def order(verb: str, speed: float = 0.0) -> int:
    """Ask this node's agent to carry out ``verb`` (root); the processes it moved."""
    if os.geteuid() != 0:
        fail("mosctl", f"{verb}: only root may do this")
    return ask("mosctl", NodeControl(verb=verb, speed=speed), Done, autostart=False).count


def make_verb(verb: str, text: str, report: str) -> None:
    def action() -> None:
        count = order(verb)
        if report:
            print(f"{count} process{'es' if count != 1 else ''} {report}")

    action.__doc__ = text + " (root)."
    cli.command(verb)(action)


# verb: (what it does, what it reports: the processes it moved)
VERBS = {
    "stay": ("Keep processes here: no automatic migration away from this node", ""),
    "nostay": ("Allow automatic migration away from this node again", ""),
    "lstay": ("Keep this node's own processes here: no automatic migration of them", ""),
    "nolstay": ("Allow this node's own processes to migrate automatically again", ""),
    "block": ("Accept no processes from other nodes", ""),
    "noblock": ("Accept processes from other nodes again", ""),
    "expel": ("Send the processes of other nodes running here to their homes", "sent home"),
    "bring": ("Bring this node's processes running elsewhere home", "brought home"),
    "isolate": ("Leave the cluster: no load reports, no connections with other nodes", ""),
    "rejoin": ("Rejoin the cluster", ""),
}

for _verb, (_text, _report) in VERBS.items():
    make_verb(_verb, _text, _report)


@cli.command("setspeed")
def setspeed(
    speed: Annotated[float, typer.Argument(help="relative speed, above 0 (1: a standard CPU)")],
) -> None:
    """Set this node's speed, as the cluster compares nodes (root)."""
    if not 0 < speed <= 1e6:
        fail("mosctl", f"setspeed: {speed:g}: the speed must be above 0 and at most 1000000")
    order("setspeed", speed)


@cli.command("shutdown")
def shutdown() -> None:
    """Stop the node agent (queued -q jobs are killed, -Q jobs start)."""
    ask("mosctl", Shutdown(), Done, autostart=False)


def main() -> None:
    run(cli, "mosctl")
