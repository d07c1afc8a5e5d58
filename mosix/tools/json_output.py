"""The tools' machine-readable output (``--json``): one schema per listing, defined once.

Each schema is the list of its records' fields: name, JSON type, meaning.  The
records are built here from the agent's messages with exactly those fields, and
the man pages (``python -m mosix.generate``) print the same schemas, so what a
script reads is what the page says.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mosix.protocol import NodeFacts, NodeLoad, ProcessInfo, QueueEntry


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # its JSON type, as the man page says it
    meaning: str


@dataclass(frozen=True)
class Schema:
    command: str  # the command line that prints it
    shape: str  # what the whole document is
    fields: tuple[Field, ...]


TEXT_NOTE = (
    "Text comes as JSON strings (non-ASCII characters escaped); a command line's words are "
    "bytes, decoded as UTF-8 with each undecodable byte as U+DC80..U+DCFF (Python's "
    "surrogateescape: os.fsencode gives the bytes back)."
)

COMMAND_FIELD = Field("command", "array of strings", "the command line's words")

PROCESS = Schema(
    "mosps --json",
    "an array of objects, one per process, in order of pid",
    (
        Field("pid", "integer", "process ID (at home)"),
        Field("user", "string", "its user's name (the number when it has none)"),
        Field("uid", "integer", "its user's ID"),
        Field("job", "integer", "job ID (0: none)"),
        Field("where", "string", '"home", "queue", or the node it runs on'),
        Field("state", "string", "running, queued, frozen or checkpointing"),
        Field("estimate_minutes", "integer or null", "the -D estimate (null: none)"),
        Field("memory_mb", "integer or null", "the -m requirement (null: none)"),
        Field("flags", "array of strings", "the inherited option words (-G3 -L -e ...)"),
        COMMAND_FIELD,
        Field("why_here", "string", 'why it cannot migrate ("": it can)'),
    ),
)

QUEUE = Schema(
    "mosq list --json, mosq listall --json",
    "an array of objects, one per queued job, in the order they will run, then one per "
    "frozen process",
    (
        Field("position", "integer", "place in the queue (1: next to run)"),
        Field("pid", "integer", "process ID of the waiting mosrun"),
        Field("user", "string", "its user's name (the number when it has none)"),
        Field("uid", "integer", "its user's ID"),
        Field("job", "integer", "job ID (0: none)"),
        Field("priority", "integer", "priority (lower runs first)"),
        Field("mode", "string", '"q" (killed when aborted) or "Q" (runs when aborted)'),
        Field("memory_mb", "integer", "the -m requirement (0: none)"),
        Field("parallel", "integer", "the -P number of processes"),
        Field("state", "string", '"queued", or "frozen" (a frozen process: position 0)'),
        Field("node", "integer", "the node whose mosrun waits (0: a lone node's queue)"),
        COMMAND_FIELD,
    ),
)

STATUS = Schema(
    "mosctl status --json, mosctl localstatus --json",
    "one object",
    (
        Field("node", "integer", "this node's number (0: not in a cluster)"),
        Field("name", "string", "this node's name"),
        Field("cpus", "integer", "number of CPUs"),
        Field("speed_mhz", "number", "CPU speed in MHz"),
        Field("load", "array of numbers", "1, 5 and 15 minute load averages"),
        Field("mem_total_mb", "integer", "memory in MB"),
        Field("mem_free_mb", "integer", "available memory in MB"),
        Field("queue_slots", "integer", "jobs the queue runs at once"),
        Field("queue_running", "integer", "queue jobs running"),
        Field("queued", "integer", "jobs waiting in the queue"),
        Field("processes", "integer", "MOSIX processes of this home"),
        Field("balance_rounds", "integer or null", "balancing rounds (null: no balancing)"),
        Field("balance_moves", "integer", "migrations the balancing began"),
        Field("speed", "number", "relative speed (mosctl setspeed)"),
        Field("settings", "array of strings", "mosctl's in force: stay, lstay, block, isolated"),
        Field("guests", "integer", "processes of other nodes running here"),
        Field("away", "integer", "processes of this node running elsewhere"),
    ),
)

NODES = Schema(
    "mosctl rstatus --json",
    "an array of objects, one per node of the cluster (empty: no cluster)",
    (
        Field("number", "integer", "node number"),
        Field("address", "string", "IPv4 address"),
        Field("name", "string", "host name"),
        Field("partition", "integer", "partition"),
        Field("state", "string", '"up" or "down"'),
        Field("cpus", "integer", "number of CPUs"),
        Field("speed", "number", "relative CPU speed"),
        Field("load", "number", "load (runnable processes)"),
        Field("free_mb", "integer", "available memory in MB"),
        Field("total_mb", "integer", "memory in MB"),
        Field("procs", "integer", "MOSIX processes running there"),
        Field("age", "number or null", "seconds since its last report (null: never heard)"),
        Field("settings", "array of strings", "mosctl's it reports: stay, block"),
        Field("guests", "integer", "processes of other nodes running there"),
    ),
)

SCHEMAS = (PROCESS, QUEUE, STATUS, NODES)


def words(command: Sequence[bytes]) -> list[str]:
    return [os.fsdecode(word) for word in command]


def process_record(p: ProcessInfo, user: str) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "user": user,
        "uid": p.uid,
        "job": p.job,
        "where": p.where,
        "state": p.state,
        "estimate_minutes": p.estimate_minutes,
        "memory_mb": p.memory_mb,
        "flags": list(p.flags),
        "command": words(p.command),
        "why_here": p.why_here,
    }


def queue_record(e: QueueEntry, user: str) -> dict[str, Any]:
    return {
        "position": e.position,
        "pid": e.pid,
        "user": user,
        "uid": e.uid,
        "job": e.job,
        "priority": e.priority,
        "mode": e.mode,
        "memory_mb": e.memory_mb,
        "parallel": e.parallel,
        "state": e.state,
        "node": e.node,
        "command": words(e.command),
    }


def status_record(f: NodeFacts) -> dict[str, Any]:
    return {
        "node": f.node,
        "name": f.name,
        "cpus": f.cpus,
        "speed_mhz": f.speed_mhz,
        "load": list(f.load),
        "mem_total_mb": f.mem_total_mb,
        "mem_free_mb": f.mem_free_mb,
        "queue_slots": f.queue_slots,
        "queue_running": f.queue_running,
        "queued": f.queued,
        "processes": f.processes,
        "balance_rounds": f.balance_rounds if f.balance_rounds >= 0 else None,
        "balance_moves": f.balance_moves,
        "speed": f.speed,
        "settings": list(f.settings),
        "guests": f.guests,
        "away": f.away,
    }


def node_record(n: NodeLoad) -> dict[str, Any]:
    return {
        "number": n.number,
        "address": n.address,
        "name": n.name,
        "partition": n.partition,
        "state": "up" if n.alive else "down",
        "cpus": n.cpus,
        "speed": n.speed,
        "load": n.load,
        "free_mb": n.free_mb,
        "total_mb": n.total_mb,
        "procs": n.procs,
        "age": n.age,
        "settings": list(n.settings),
        "guests": n.guests,
    }


def emit(document: object) -> None:
    """The document on stdout, one line (ASCII: other characters escaped)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=True) + "\n")
