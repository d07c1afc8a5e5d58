"""The allocation's nodes as MOSIX nodes: numbers, names and addresses from Slurm.

Node k is the k-th host of ``SLURM_JOB_NODELIST`` (expanded as
``scontrol show hostnames`` does); its address is the ``NodeAddr`` Slurm
itself uses for it (``scontrol show node -o``), resolved to IPv4 when it is a
host name.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass

from mosix.cluster.nodemap import ipv4
from mosix.exits import EXIT_USAGE
from mosix.slurm.hostlist import HostListError, expand
from mosix.slurm.job import JobError, SlurmJob

SCONTROL_TIMEOUT = 60.0
SLURM_FAILED = EXIT_USAGE  # mosix-slurm's own failures are 125, as mosrun's


@dataclass(frozen=True)
class JobNode:
    number: int
    name: str
    address: str


def node_names(job: SlurmJob) -> list[str]:
    try:
        names = expand(job.node_list)
    except HostListError as e:
        raise JobError(f"SLURM_JOB_NODELIST: {e}", SLURM_FAILED) from None
    if len(set(names)) != len(names):
        raise JobError(f"SLURM_JOB_NODELIST={job.node_list!r} names a node twice", SLURM_FAILED)
    return names


def _node_addresses(names: list[str]) -> dict[str, str]:
    """Slurm's NodeAddr for each node (``scontrol show node -o``: one line per node)."""
    try:
        done = subprocess.run(
            ["scontrol", "show", "node", "-o", ",".join(names)],
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JobError(f"scontrol show node: {e}", SLURM_FAILED) from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"status {done.returncode}"])[-1]
        raise JobError(f"scontrol show node: {said}", SLURM_FAILED)
    found: dict[str, str] = {}
    for line in done.stdout.splitlines():
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        if "NodeName" in fields:
            found[fields["NodeName"]] = fields.get("NodeAddr") or fields["NodeName"]
    return found


def _resolve(name: str, address: str) -> str:
    literal = ipv4(address)
    if literal is not None:
        return literal
    try:
        infos = socket.getaddrinfo(address, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        raise JobError(f"node {name}: cannot resolve {address!r}: {e}", SLURM_FAILED) from None
    return str(infos[0][4][0])


def job_nodes(job: SlurmJob) -> list[JobNode]:
    """Every node of the allocation, numbered from 1 in the node list's order."""
    names = node_names(job)
    addresses = _node_addresses(names)
    nodes = []
    for k, name in enumerate(names, start=1):
        if name not in addresses:
            raise JobError(f"node {name}: scontrol does not know it", SLURM_FAILED)
        nodes.append(JobNode(k, name, _resolve(name, addresses[name])))
    return nodes
