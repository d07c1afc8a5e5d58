"""A node's share of the machine's processors: one cgroup per node with a CPU quota.

All nodes of a test cluster share the machine's processors.  A node given
``cpus=0.6`` gets at most 0.6 of one processor's time whatever the other nodes
do, so N nodes behave like N small machines as long as N * cpus stays below
the processors there are (3 * 0.6 on a 2-processor machine).  Every process
that enters the node (its agent, commands of LocalCluster.run/popen and
``mosix-testcluster exec``) joins the node's cgroup before it enters the
namespaces; its descendants inherit it.  The node's agent reads the quota back
as its CPU count (mosix.sysinfo.node_facts.cpu_count).

cgroup v1 (cpu.cfs_quota_us) and v2 (cpu.max) are both handled.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mosix.testcluster.errors import BadRequest, ClusterError
from mosix.testcluster.layout import Layout

PERIOD_US = 100_000
V1_ROOTS = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))
V2_ROOT = Path("/sys/fs/cgroup")
TOP = "mosix-testcluster"  # under the hierarchy's root: <TOP>/<cluster>/node<k>


def hierarchy() -> tuple[Path, int] | None:
    """The cgroup hierarchy with the cpu controller and its version (None: there is none)."""
    for root in V1_ROOTS:
        if (root / "cpu.cfs_quota_us").exists() or (root / "cpu.cfs_period_us").exists():
            return root, 1
    try:
        controllers = (V2_ROOT / "cgroup.controllers").read_text().split()
    except OSError:
        return None
    return (V2_ROOT, 2) if "cpu" in controllers else None


def node_group(layout: Layout, k: int) -> Path | None:
    """Node k's cgroup if the cluster has CPU limits (None: it has not)."""
    found = hierarchy()
    if found is None:
        return None
    group = found[0] / TOP / layout.name / f"node{k}"
    return group if group.is_dir() else None


def check(cpus: float) -> None:
    if not 0.01 <= cpus <= (os.cpu_count() or 1):
        raise BadRequest(
            f"cpus {cpus:g}: want a share of the processors between 0.01 and {os.cpu_count()}"
        )


def create(layout: Layout, nodes: int, cpus: float) -> None:
    """A cgroup for each node, limited to ``cpus`` processors."""
    check(cpus)
    found = hierarchy()
    if found is None:
        raise ClusterError("CPU limits need the cgroup cpu controller (v1 cpu or v2 cpu.max)")
    root, version = found
    quota = max(int(cpus * PERIOD_US), 1000)
    try:
        parent = root / TOP / layout.name
        parent.mkdir(parents=True, exist_ok=True)
        if version == 2:
            for level in (root, root / TOP, parent):
                (level / "cgroup.subtree_control").write_text("+cpu")
        for k in range(1, nodes + 1):
            group = parent / f"node{k}"
            group.mkdir(exist_ok=True)
            if version == 1:
                (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}")
                (group / "cpu.cfs_quota_us").write_text(f"{quota}")
            else:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    except OSError as e:
        raise ClusterError(f"CPU limits: {e.filename}: {e.strerror}") from None


def remove(layout: Layout) -> None:
    """The cluster's cgroups gone (its processes must be gone already)."""
    found = hierarchy()
    if found is None:
        return
    parent = found[0] / TOP / layout.name
    if not parent.is_dir():
        return
    try:
        for group in parent.iterdir():
            if group.is_dir():
                group.rmdir()
        parent.rmdir()
    except OSError as e:
        raise ClusterError(f"CPU limits: cannot remove {e.filename}: {e.strerror}") from None
    with contextlib.suppress(OSError):
        (found[0] / TOP).rmdir()  # other clusters may still use it


def limit_of(layout: Layout, k: int) -> float | None:
    """Node k's processors (None: no limit)."""
    group = node_group(layout, k)
    if group is None:
        return None
    try:
        if (group / "cpu.cfs_quota_us").exists():
            quota = int((group / "cpu.cfs_quota_us").read_text())
            period = int((group / "cpu.cfs_period_us").read_text())
        else:
            words = (group / "cpu.max").read_text().split()
            if words[0] == "max":
                return None
            quota, period = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):
        return None
    return None if quota <= 0 else quota / period


def joining(layout: Layout, k: int, argv: list[str]) -> list[str]:
    """``argv`` preceded by joining node k's cgroup, when the cluster has CPU limits."""
    group = node_group(layout, k)
    if group is None:
        return argv
    return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"), *argv]
