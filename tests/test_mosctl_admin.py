"""mosctl's administration verbs in a real 3-node test cluster, each shown by its effect.

whois (number <-> name <-> address), block/noblock (offers refused, placement and
migrate leave the node out), expel (guests go home), bring (this home's processes
come home), isolate/rejoin (the others see the node down, then up), setspeed (the
others see the new speed), and that only root may change a node.  The programs are
tests/cprogs/burn.c under ``mosrun -L`` (the balancer leaves them where they are
put): they compute until their stdin ends, then say how much; that must come
through whatever happened to them meanwhile.  lstay/stay: tests/test_mosctl_stay.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from support.agents import as_user
from support.clusters import migrate, node_programs, registered_where, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def burn() -> Iterator[str]:
    with node_programs("mosctl", {"burn": ["-O0", "burn.c"]}) as directory:
        yield str(directory / "burn")


def mosctl(cluster: LocalCluster, k: int, *words: str) -> subprocess.CompletedProcess[str]:
    return cluster.run(k, ["mosctl", *words], capture_output=True, text=True, timeout=TIMEOUT)


def ok(cluster: LocalCluster, k: int, *words: str) -> str:
    result = mosctl(cluster, k, *words)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str], status: int = 125) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def nodes_seen(cluster: LocalCluster, k: int) -> dict[int, dict[str, Any]]:
    return {n["number"]: n for n in json.loads(ok(cluster, k, "rstatus", "--json"))}


def settings(cluster: LocalCluster, k: int) -> list[str]:
    found: list[str] = json.loads(ok(cluster, k, "status", "--json"))["settings"]
    return found


class Burner:
    """A burn.c job started at node 1 (its home) with -L."""

    def __init__(self, cluster: LocalCluster, burn: str) -> None:
        self.proc = cluster.popen(
            1,
            ["mosrun", "-L", burn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        wait_until(
            lambda: registered_where(cluster, self.pid) == "home", what="the job to register"
        )

    def finish(self) -> None:
        """It ends when its stdin does: its output and status must be whole."""
        stdout, stderr = self.proc.communicate("", timeout=TIMEOUT)
        assert self.proc.returncode == 0, stderr
        assert re.fullmatch(r"burnt \d+ rounds\n", stdout), stdout


@pytest.fixture
def burner(cluster3: LocalCluster, burn: str) -> Iterator[Burner]:
    job = Burner(cluster3, burn)
    try:
        yield job
    finally:
        if job.proc.poll() is None:
            job.finish()


def test_whois_from_number_name_or_address(cluster3: LocalCluster) -> None:
    for which in ("2", "node2", "10.77.0.2"):
        assert ok(cluster3, 1, "whois", which) == f"2 node2 {cluster3.address(2)}\n"
    assert ok(cluster3, 3, "whois") == f"3 node3 {cluster3.address(3)}\n"  # this node
    assert one_line(mosctl(cluster3, 1, "whois", "9"), 1) == (
        "mosctl: whois: 9: no such node in this cluster"
    )


def test_block_refuses_guests_until_noblock(cluster3: LocalCluster, burner: Burner) -> None:
    ok(cluster3, 2, "block")
    try:
        assert settings(cluster3, 2) == ["block"]
        refused = migrate(cluster3, burner.pid, "2")
        assert refused.returncode == 1
        assert "accepts no processes from other nodes (blocked)" in refused.stderr
        assert where(cluster3, burner.pid) == "home"
        # placement leaves it out once node 1 has its load vector saying so
        wait_until(lambda: nodes_seen(cluster3, 1)[2]["settings"] == ["block"], what="block seen")
        placed = cluster3.run(1, ["mosrun", "-2", "true"], capture_output=True, text=True)
        assert one_line(placed) == "mosrun: -2: node 2 is not available (-F starts it elsewhere)"
    finally:
        ok(cluster3, 2, "noblock")
    assert settings(cluster3, 2) == []
    assert migrate(cluster3, burner.pid, "2").returncode == 0
    assert where(cluster3, burner.pid) == "node2"


def test_expel_sends_the_guests_home(cluster3: LocalCluster, burner: Burner) -> None:
    assert migrate(cluster3, burner.pid, "3").returncode == 0
    assert where(cluster3, burner.pid) == "node3"
    assert json.loads(ok(cluster3, 3, "status", "--json"))["guests"] == 1
    assert ok(cluster3, 3, "expel") == "1 process sent home\n"
    wait_until(lambda: where(cluster3, burner.pid) == "home", TIMEOUT, what="it to come home")
    assert ok(cluster3, 3, "expel") == "0 processes sent home\n"
    burner.finish()


def test_bring_brings_this_homes_processes_home(cluster3: LocalCluster, burn: str) -> None:
    jobs = [Burner(cluster3, burn) for _ in range(2)]
    try:
        for job, node in zip(jobs, ("2", "3"), strict=True):
            assert migrate(cluster3, job.pid, node).returncode == 0
        assert [where(cluster3, job.pid) for job in jobs] == ["node2", "node3"]
        assert ok(cluster3, 1, "bring") == "2 processes brought home\n"
        assert [where(cluster3, job.pid) for job in jobs] == ["home", "home"]
    finally:
        for job in jobs:
            job.finish()


def test_isolate_leaves_the_cluster_and_rejoin_comes_back(
    cluster3: LocalCluster, burner: Burner
) -> None:
    assert migrate(cluster3, burner.pid, "2").returncode == 0
    refused = one_line(mosctl(cluster3, 2, "isolate"))
    assert refused == "mosctl: isolate: 1 guest(s) run here (mosctl expel first)"
    ok(cluster3, 1, "bring")
    ok(cluster3, 3, "isolate")
    try:
        assert settings(cluster3, 3) == ["isolated"]
        wait_until(lambda: nodes_seen(cluster3, 1)[3]["state"] == "down", what="node 3 down")
        alone = nodes_seen(cluster3, 3)
        assert [alone[k]["state"] for k in (1, 2, 3)] == ["down", "down", "up"]
        moved = migrate(cluster3, burner.pid, "3")
        assert moved.returncode == 1 and "is isolated" in moved.stderr
    finally:
        ok(cluster3, 3, "rejoin")
    wait_until(lambda: nodes_seen(cluster3, 1)[3]["state"] == "up", what="node 3 up again")
    wait_until(
        lambda: all(n["state"] == "up" for n in nodes_seen(cluster3, 3).values()),
        what="node 3 to see the others again",
    )
    assert migrate(cluster3, burner.pid, "3").returncode == 0


def test_setspeed_reaches_the_other_nodes(cluster3: LocalCluster) -> None:
    ok(cluster3, 2, "setspeed", "2.5")
    try:
        wait_until(lambda: nodes_seen(cluster3, 1)[2]["speed"] == 2.5, what="the new speed")
        assert json.loads(ok(cluster3, 2, "status", "--json"))["speed"] == 2.5
    finally:
        ok(cluster3, 2, "setspeed", "1")
    for bad in ("0", "-1", "inf"):
        assert one_line(mosctl(cluster3, 2, "setspeed", "--", bad)).startswith("mosctl: setspeed: ")


def crash_and_restart_agent(cluster: LocalCluster, k: int) -> None:
    """Node k's agent killed by SIGKILL (no orderly save), and a new one started."""
    pid = cluster.agent_pid(k)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: cluster.agent_pid(k) is None, what=f"node {k}'s agent gone")
    cluster.start_agent(k)


def test_settings_and_speed_survive_a_restart_of_the_agent(cluster3: LocalCluster) -> None:
    for verb in ("stay", "lstay", "block"):
        ok(cluster3, 3, verb)
    ok(cluster3, 3, "setspeed", "3.5")
    try:
        crash_and_restart_agent(cluster3, 3)
        assert settings(cluster3, 3) == ["stay", "lstay", "block"]
        assert json.loads(ok(cluster3, 3, "status", "--json"))["speed"] == 3.5
        wait_until(
            lambda: (
                (nodes_seen(cluster3, 1)[3]["settings"], nodes_seen(cluster3, 1)[3]["speed"])
                == (["stay", "block"], 3.5)
            ),
            what="node 1 to see node 3's settings and speed after its restart",
        )
        for verb in ("nostay", "nolstay", "noblock"):
            ok(cluster3, 3, verb)
        ok(cluster3, 3, "isolate")
        cluster3.restart_agent(3)  # an orderly one this time
        assert settings(cluster3, 3) == ["isolated"]
        wait_until(lambda: nodes_seen(cluster3, 1)[3]["state"] == "down", what="node 3 down")
        assert json.loads(ok(cluster3, 3, "status", "--json"))["speed"] == 3.5
    finally:
        for verb in ("nostay", "nolstay", "noblock", "rejoin"):
            ok(cluster3, 3, verb)
        ok(cluster3, 3, "setspeed", "1")
    wait_until(lambda: nodes_seen(cluster3, 1)[3]["state"] == "up", what="node 3 up again")
    cluster3.restart_agent(3)
    assert settings(cluster3, 3) == []


# The agent's own check, without the tool's: a NodeControl straight to the socket.
ASK_AGENT = """
from mosix.agent_client import connect
from mosix.exits import Failure
from mosix.protocol import Done, NodeControl
try:
    with connect(autostart=False) as client:
        client.request(NodeControl(verb="block"), Done)
    print("done")
except Failure as e:
    print(e.message)
"""


def test_only_root_changes_a_node(cluster3: LocalCluster, two_users: tuple[str, str]) -> None:
    user = two_users[0]
    for verb in ("stay", "block", "expel", "bring", "isolate", "setspeed 2"):
        result = cluster3.run(
            1, as_user(user, ("mosctl", *verb.split())), capture_output=True, text=True
        )
        assert one_line(result) == f"mosctl: {verb.split()[0]}: only root may do this"
    direct = cluster3.run(
        1, as_user(user, (sys.executable, "-c", ASK_AGENT)), capture_output=True, text=True
    )
    assert direct.stdout == "block: only root may do this\n", direct.stderr
    assert settings(cluster3, 1) == []
    # telling is for everyone
    told = cluster3.run(1, as_user(user, ("mosctl", "whois", "1")), capture_output=True, text=True)
    assert told.stdout == f"1 node1 {cluster3.address(1)}\n", told.stderr


def test_a_lone_node_says_it_has_no_cluster(make_cluster: Any) -> None:
    lone = make_cluster(1, cluster=None)
    assert one_line(mosctl(lone, 1, "block")) == "mosctl: block: this node is not part of a cluster"
    assert one_line(mosctl(lone, 1, "whois", "1"), 1).startswith("mosctl: whois: this node is not")
