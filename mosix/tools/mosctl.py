"""mosctl: node administration and status."""

from __future__ import annotations

from mosix.display import shown
from mosix.protocol import Done, GetStatus, ListNodes, Nodes, Shutdown, Status
from mosix.tools.common import app, ask, not_available, run

cli = app("mosctl", "Administer this MOSIX node and show its status.")


@cli.command("status")
def status() -> None:
    """Show this node's status: CPUs, speed, load, memory, queue."""
    facts = ask("mosctl", GetStatus(), Status).facts
    assert facts is not None
    load = " ".join(f"{x:.2f}" for x in facts.load)
    print(f"node:       {facts.node} ({shown(facts.name)})")
    print(f"cpus:       {facts.cpus} at {facts.speed_mhz:.0f} MHz")
    print(f"load:       {load}")
    print(f"memory:     {facts.mem_free_mb} MB free of {facts.mem_total_mb} MB")
    print(
        f"queue:      {facts.queued} queued, {facts.queue_running} of {facts.queue_slots} "
        "slots running"
    )
    print(f"processes:  {facts.processes} MOSIX processes")
    if facts.balance_rounds >= 0:
        print(f"balancing:  {facts.balance_rounds} rounds, {facts.balance_moves} moves")
    else:
        print("balancing:  off")


@cli.command("rstatus")
def rstatus() -> None:
    """Show the nodes of the cluster: up or down, CPUs, speed, load, memory."""
    nodes = ask("mosctl", ListNodes(), Nodes).nodes
    if not nodes:
        print("this node is not part of a cluster (no [cluster] in its configuration)")
        return
    print(
        f"{'NODE':>5} {'ADDRESS':<15} {'NAME':<12} {'PART':>4} {'STATE':<5} {'CPUS':>4} "
        f"{'SPEED':>6} {'LOAD':>6} {'FREE_MB':>8} {'TOTAL_MB':>8} {'PROCS':>5}"
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
            f"{n.procs:>5}"
        )


@cli.command("shutdown")
def shutdown() -> None:
    """Stop the node agent (queued -q jobs are killed, -Q jobs start)."""
    ask("mosctl", Shutdown(), Done, autostart=False)


LATER = {
    "localstatus": "show this node's status without asking other nodes",
    "stay": "stop automatic migration away from this node",
    "nostay": "allow automatic migration away from this node again",
    "lstay": "keep local processes from migrating automatically",
    "nolstay": "allow local processes to migrate automatically again",
    "block": "refuse processes from other nodes",
    "noblock": "accept processes from other nodes again",
    "expel": "send processes of other nodes away",
    "bring": "bring this node's processes home",
    "isolate": "disconnect from the cluster",
    "rejoin": "reconnect to the cluster",
    "whois": "show which node number a host has (and the reverse)",
}


def make_verb(verb: str, text: str) -> None:
    def action() -> None:
        not_available("mosctl", verb)

    action.__doc__ = text[0].upper() + text[1:] + "."
    cli.command(verb)(action)


for _verb, _text in LATER.items():
    make_verb(_verb, _text)


def main() -> None:
    run(cli, "mosctl")
