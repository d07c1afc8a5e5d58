"""mosctl: node administration and status."""

from __future__ import annotations

from mosix.tools.common import app, not_available, run

cli = app("mosctl", "Administer this MOSIX node and show its status.")

VERBS = {
    "status": "show this node's status (CPUs, speed, load, free memory)",
    "localstatus": "show this node's status without asking other nodes",
    "rstatus": "show the status of the other nodes",
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
    "shutdown": "expel, bring home and stop the node agent",
    "whois": "show which node number a host has (and the reverse)",
}


def make_verb(verb: str, text: str) -> None:
    def action() -> None:
        not_available("mosctl", verb)

    action.__doc__ = text[0].upper() + text[1:] + "."
    cli.command(verb)(action)


for _verb, _text in VERBS.items():
    make_verb(_verb, _text)


def main() -> None:
    run(cli, "mosctl")
