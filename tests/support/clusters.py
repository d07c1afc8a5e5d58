"""A local test cluster for tests: real network and mount namespaces, one mosixd per node.

    def test_x(cluster3): ...                 # 3 nodes, shared by the tests of a module
    def test_y(make_cluster):
        cluster = make_cluster(2)             # a cluster of its own, removed after the test

Every cluster is named after this pytest process (``pt{pid}c{n}``), so test runs
on the same machine and a user's ``mosix-testcluster`` cluster never meet; a run
that crashed leaves clusters whose owner is gone, and the next run removes them.
The tests are skipped, with the reason, where namespaces cannot be made (not root,
no util-linux, no pyroute2, a kernel or container that refuses).  Each node's agent
gets the full configuration, [cluster] included; ``make_cluster(n, cluster=None)``
leaves that section out (a set of lone agents).

A test that uses a test cluster is marked ``cluster`` at collection: through
``cluster3``, ``make_cluster``, or a module's own fixture that asks for ``namespaces``
before calling ``bring_up``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mosix.testcluster import ClusterError, LocalCluster, existing_clusters
from mosix.testcluster.cluster import owner_pid
from support.cbuild import build_c

CPROGS = Path(__file__).parents[1] / "cprogs"
_serial = itertools.count(1)
_OWN_NAME = re.compile(r"pt(\d+)c\d+")


@functools.cache
def skip_reason() -> str | None:
    """Why a test cluster cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "the test cluster needs root"
    for tool in ("nsenter", "unshare", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"the test cluster needs util-linux's {tool}"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "the test cluster needs pyroute2 (pip install '.[cluster]')"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"network and mount namespaces refused: {probe.stderr.strip()}"
    return None


def remove_orphans() -> None:
    """Clusters of earlier test runs whose pytest is gone (a crash, a kill -9)."""
    for name in existing_clusters():
        match = _OWN_NAME.fullmatch(name)
        if match is None:
            continue
        pid = owner_pid(name) or int(match.group(1))
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            LocalCluster(1, name).down()


def bring_up(nodes: int, **options: object) -> LocalCluster:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    remove_orphans()
    name = f"pt{os.getpid()}c{next(_serial)}"
    try:
        return LocalCluster(nodes, name, **options).up()  # type: ignore[arg-type]
    except ClusterError as e:
        pytest.fail(f"test cluster {name}: {e}")


CLUSTER_FIXTURES = frozenset({"namespaces", "cluster3", "make_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that brings up a test cluster (``-m "not cluster"``)."""
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def namespaces() -> None:
    """A module's own cluster fixture asks for this before ``bring_up``: its tests are
    marked ``cluster`` and skipped, with the reason, where no test cluster can be made."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster3() -> Iterator[LocalCluster]:
    """Three nodes for the tests of one module; a test that cuts a link heals it."""
    cluster = bring_up(3)
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """``make_cluster(n, **LocalCluster options)``: a cluster of n nodes for this test only."""
    made: list[LocalCluster] = []

    def make(nodes: int = 3, **options: object) -> LocalCluster:
        cluster = bring_up(nodes, **options)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.down()


@contextlib.contextmanager
def node_programs(prefix: str, builds: dict[str, list[str]]) -> Iterator[Path]:
    """Test programs built where every node sees them (not in /tmp: each node has its own);
    ``builds``: program name -> gcc's arguments (sources named relative to tests/cprogs).
    Yields the directory; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix=f"mosix-{prefix}-", dir="/var/tmp"))
    try:
        for name, words in builds.items():
            sources = [CPROGS / w for w in words if w.endswith(".c")]
            flags = [w for w in words if not w.endswith(".c")]
            build_c(sources, directory / name, *flags)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def reads_stdin(pid: int) -> bool:
    """Whether a thread of process ``pid`` is in read(0, ...) now
    (/proc/PID/task/TID/syscall: the number, then the arguments); e.g. a deputy
    serving its copy's read of the home stdin (on the fast path, in the thread that
    serves the copy's direct channel)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            words = (task / "syscall").read_text().split()
        except OSError:
            continue  # a thread that just ended
        if words[:2] == ["0", "0x0"]:
            return True
    return False


COMMAND_TIMEOUT = 120.0  # a tool run inside a node (mosps, migrate)


def migrate(cluster: LocalCluster, pid: int, target: str) -> subprocess.CompletedProcess[str]:
    """``migrate PID TARGET`` at node 1 (the home of the tests' processes)."""
    return cluster.run(
        1, ["migrate", str(pid), target], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )


def where(cluster: LocalCluster, pid: int) -> str:
    """mosps's WHERE column for ``pid`` at its home node (node 1)."""
    found, listing = listed_where(cluster, pid)
    if found is None:
        raise AssertionError(f"process {pid} not in mosps:\n{listing}")
    return found


def registered_where(cluster: LocalCluster, pid: int) -> str | None:
    """:func:`where`, or None while ``pid`` is not (yet) listed: for waiting on it."""
    return listed_where(cluster, pid)[0]


def listed_where(cluster: LocalCluster, pid: int) -> tuple[str | None, str]:
    listing = cluster.run(1, ["mosps"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert listing.returncode == 0, listing.stderr
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == str(pid):
            return fields[3], listing.stdout
    return None, listing.stdout


def moved(cluster: LocalCluster, proc: subprocess.Popen[str], target: str) -> None:
    """``migrate PID TARGET`` at node 1, which succeeds (else its stderr and whether
    the process still runs say why)."""
    done = migrate(cluster, proc.pid, target)
    assert done.returncode == 0, f"migrate {target}: {done.stderr} (exit status {proc.poll()})"


@contextlib.contextmanager
def mosrun_at_home(
    cluster: LocalCluster, argv: list[str], cwd: str | None = None, user: str | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``mosrun ARGV`` started at node 1 (``cwd``: the node's / unless given; ``user``:
    as that user, with their groups), its standard streams piped as text; killed and
    reaped if it runs on after the block."""
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    proc = cluster.popen(
        1,
        [*(setpriv if user else []), "mosrun", *argv],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
