"""--json of mosps, mosq list/listall and mosctl status/localstatus/rstatus: parsed, and held
to the one schema each (mosix.tools.json_output, which the man pages print).

A real agent with one queue slot: a blocker runs, a second job waits in the queue;
the listings must name both with exactly the schema's fields, of the schema's types.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from support.agents import Agent, start_blocker
from support.waiting import wait_until

from mosix.tools.json_output import NODES, PROCESS, QUEUE, STATUS, Schema

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
}


def conforms(value: Any, kind: str) -> bool:
    if kind.endswith(" or null") and value is None:
        return True
    kind = kind.removesuffix(" or null")
    if kind.startswith("array of "):
        item = {"strings": "string", "numbers": "number"}[kind.removeprefix("array of ")]
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    return isinstance(value, JSON_TYPES[kind]) and not (
        kind != "boolean" and isinstance(value, bool)
    )


def check(record: dict[str, Any], schema: Schema) -> None:
    assert list(record) == [f.name for f in schema.fields]
    for f in schema.fields:
        assert conforms(record[f.name], f.kind), (f.name, record[f.name], f.kind)


def document(agent: Agent, *argv: str) -> Any:
    result = agent.run(*argv)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.count("\n") == 1  # one line
    return json.loads(result.stdout)


@pytest.fixture
def queued(agent: Agent) -> Any:
    """(the blocker, the queued job): one running queue job and one waiting."""
    blocker = start_blocker(agent)
    waiting = agent.spawn("mosrun", "-q7", "-J3", "sh", "-c", "exit 0 # \xe9\udcff")
    wait_until(lambda: agent.queued_count() == 1, what="the second job to be queued")
    yield blocker, waiting
    assert blocker.stdin is not None
    blocker.stdin.close()
    assert blocker.wait(timeout=30) == 0
    assert waiting.wait(timeout=30) == 0


def test_mosps_json(agent: Agent, queued: Any) -> None:
    blocker, waiting = queued
    processes = document(agent, "mosps", "--json")
    for p in processes:
        check(p, PROCESS)
    by_pid = {p["pid"]: p for p in processes}
    assert by_pid[blocker.pid]["where"] == "home"
    assert by_pid[blocker.pid]["command"] == ["sh", "-c", "echo running; exec cat"]
    assert by_pid[waiting.pid]["state"] == "queued"
    assert by_pid[waiting.pid]["user"] == "root" and by_pid[waiting.pid]["uid"] == 0
    assert [p["pid"] for p in processes] == sorted(by_pid)


def test_mosq_list_json(agent: Agent, queued: Any) -> None:
    _, waiting = queued
    for verb in ("list", "listall"):
        [entry] = document(agent, "mosq", verb, "--json")
        check(entry, QUEUE)
        assert (entry["position"], entry["pid"], entry["priority"], entry["job"]) == (
            1,
            waiting.pid,
            7,
            3,
        )
        # any bytes: decoded with surrogateescape, so os.fsencode gives them back
        assert os.fsencode(entry["command"][2]) == "exit 0 # \xe9".encode() + b"\xff"


def test_mosctl_status_json(agent: Agent, queued: Any) -> None:
    for verb in ("status", "localstatus"):
        facts = document(agent, "mosctl", verb, "--json")
        check(facts, STATUS)
        assert (facts["queued"], facts["queue_running"], facts["queue_slots"]) == (1, 1, 1)
        assert facts["balance_rounds"] is None  # no cluster: no balancing
        assert facts["settings"] == [] and len(facts["load"]) == 3


def test_mosctl_rstatus_json_without_a_cluster_is_an_empty_array(agent: Agent) -> None:
    assert document(agent, "mosctl", "rstatus", "--json") == []


def test_mosctl_rstatus_json_in_a_cluster(cluster3: Any) -> None:
    def nodes() -> list[dict[str, Any]]:
        result = cluster3.run(
            1, ["mosctl", "rstatus", "--json"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        parsed: list[dict[str, Any]] = json.loads(result.stdout)
        return parsed

    wait_until(lambda: all(n["state"] == "up" for n in nodes()), what="three nodes up")
    listing = nodes()
    for n in listing:
        check(n, NODES)
    assert [(n["number"], n["name"]) for n in listing] == [(k, f"node{k}") for k in (1, 2, 3)]
    assert listing[0]["age"] == 0.0


def test_the_text_output_is_unchanged_without_json(agent: Agent) -> None:
    result = agent.run("mosps")
    assert result.stdout.startswith("    PID USER")
    assert subprocess.run(["mosps", "--json", "--bogus"], capture_output=True).returncode == 125
