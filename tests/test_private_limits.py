"""mosrun -X: the administrator's maximum total size of a process's private
temporary files (the agent's ``[private]`` section), as the manual's PRIVATE
TEMPORARY FILES says: "Different maximum values can be imposed when running on
the home-node, in the local cluster and on the grid - exceeding this maximum will
cause a process to migrate back to its home-node."

At home a write beyond the maximum fails as on a full disk (all the directories
count together); away the supervisor brings the process home once it is over
the maximum and has no private file open.  Real agents, real mosrun, real
programs; away in a 3-node test cluster (node 3 another partition: the grid).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent
from support.clusters import bring_up, mosrun_at_home, moved, where
from support.waiting import wait_until
from test_private_dirs import private_listing, python

from mosix.node.config import ConfigError, read_config
from mosix.private_limits import PrivateLimits
from mosix.testcluster import LocalCluster

MIB = 1 << 20
# Writes each PATH:MIB of its arguments (a file of that many MiB) and prints
# what each gave: ok, or the errno's name.
WRITE_EACH = (
    "import errno, sys\n"
    "for spec in sys.argv[1:]:\n"
    "    path, mib = spec.rsplit(':', 1)\n"
    "    try:\n"
    "        with open(path, 'wb') as f:\n"
    "            for _ in range(int(mib)):\n"
    "                f.write(b'x' * (1 << 20))\n"
    "        print(path, 'ok', flush=True)\n"
    "    except OSError as e:\n"
    "        print(path, errno.errorcode[e.errno], flush=True)\n"
)


# ------------------------------------------------------------ configuration


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mosixd.toml"
    path.write_text(text)
    return path


def test_the_private_section_is_read(tmp_path: Path) -> None:
    text = "[private]\nhome_mb = 64\ncluster_mb = 8\ngrid_mb = 2\n"
    config, _ = read_config(write_config(tmp_path, text))
    assert config.private == PrivateLimits(home_mb=64, cluster_mb=8, grid_mb=2)
    unset, _ = read_config(write_config(tmp_path, "[queue]\nslots = 2\n"))
    assert unset.private == PrivateLimits(0, 0, 0)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[private]\nhome_mb = -1\n", "private.home_mb is out of range"),
        ("[private]\ncluster_mb = 4294967297\n", "private.cluster_mb is out of range"),
        ("[private]\ngrid_mb = '8'\n", "private.grid_mb must be an integer"),
        ("[private]\nhome_mb = 1.5\n", "private.home_mb must be an integer"),
        ("[private]\nhome_mb = true\n", "private.home_mb must be an integer"),
        ("[private]\nlocal_mb = 8\n", "unknown key private.local_mb"),
        ("private = 8\n", "unknown section [private]"),
    ],
)
def test_bad_private_settings_are_one_line_naming_the_key(
    tmp_path: Path, text: str, error: str
) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert str(caught.value) == f"{path}: {error}"


@pytest.mark.parametrize(
    ("limits", "same_partition", "away"),
    [
        (PrivateLimits(64, 4, 2), True, 4),  # the local cluster
        (PrivateLimits(64, 4, 2), False, 2),  # the grid
        (PrivateLimits(8, 16, 0), True, 8),  # above home's: home's
        (PrivateLimits(8, 16, 0), False, 0),  # none away: home's tmpfs size only
        (PrivateLimits(0, 16, 0), True, 16),  # none at home
    ],
)
def test_the_away_maximum_is_the_partitions_and_never_above_homes(
    limits: PrivateLimits, same_partition: bool, away: int
) -> None:
    assert limits.away_mb(same_partition) == away


# ------------------------------------------------------------ at home


def agent_with(base: Path, section: str) -> Agent:
    a = make_agent(base)
    with a.config.open("a") as f:
        f.write(section)
    a.start()
    return a


@pytest.fixture
def limited(agent_base: Path) -> Iterator[Agent]:
    """An agent whose processes' private files take at most 4 MiB at home."""
    a = agent_with(agent_base, "[private]\nhome_mb = 4\ncluster_mb = 2\n")
    yield a
    cleanup(a)


def two_dirs(base: Path) -> tuple[Path, Path]:
    dirs = (base / "private-a", base / "private-b")
    for d in dirs:
        d.mkdir()
        d.chmod(0o1777)
    return dirs


@pytest.mark.parametrize("as_user", [None, "mosixtest1"])
def test_at_home_all_directories_together_take_at_most_the_home_maximum(
    limited: Agent, two_users: tuple[str, str], as_user: str | None
) -> None:
    a, b = two_dirs(limited.run_dir.parent)
    argv = ["mosrun", f"-X{a}", f"-X{b}", *python(WRITE_EACH)]
    # 3 MiB fit; 2 more in the other directory do not: the 4 MiB are for both
    done = limited.run(*argv, f"{a}/f:3", f"{b}/g:2", f"{b}/h:1", user=as_user)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{a}/f ok\n{b}/g ENOSPC\n{b}/h ENOSPC\n"
    # below it, either directory
    done = limited.run(*argv, f"{a}/f:2", f"{b}/g:1", user=as_user)
    assert (done.returncode, done.stdout) == (0, f"{a}/f ok\n{b}/g ok\n"), done.stderr
    assert list(a.iterdir()) == list(b.iterdir()) == []


def test_at_home_a_program_sees_a_full_disk_and_its_status_passes_through(
    limited: Agent,
) -> None:
    a, b = two_dirs(limited.run_dir.parent)
    script = f"dd if=/dev/zero of={a}/f bs=1M count=5 2>&1 | grep -o 'No space left on device'"
    done = limited.run("mosrun", f"-X{a}", f"-X{b}", "sh", "-c", f"{script}; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, "No space left on device\n", "")


def test_at_home_the_tmpfs_has_the_agents_size(limited: Agent) -> None:
    a, _ = two_dirs(limited.run_dir.parent)
    done = limited.run("mosrun", f"-X{a}", "sh", "-c", f"df -k --output=size {a} | tail -1")
    assert (done.returncode, done.stdout.strip()) == (0, str(4 * 1024)), done.stderr


def test_without_a_maximum_the_files_are_not_limited(agent: Agent) -> None:
    a, b = two_dirs(agent.run_dir.parent)
    done = agent.run("mosrun", f"-X{a}", f"-X{b}", *python(WRITE_EACH), f"{a}/f:3", f"{b}/g:5")
    assert (done.returncode, done.stdout) == (0, f"{a}/f ok\n{b}/g ok\n"), done.stderr


# ------------------------------------------------------------ away

# One step per line on stdin: "write N" appends N MiB (each byte 65 + N) to the
# private file, opening it if it is not open, and keeps it open; "close" closes
# it; "digest" prints the file's digest.
STEPS = (
    "import errno, hashlib, os, sys\n"
    "p = os.path.join(sys.argv[1], 'data')\n"
    "fd = None\n"
    "print('started', flush=True)\n"
    "for line in sys.stdin:\n"
    "    word, *n = line.split()\n"
    "    if word == 'write':\n"
    "        if fd is None:\n"
    "            fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)\n"
    "        try:\n"
    "            for _ in range(int(n[0])):\n"
    "                os.write(fd, bytes([65 + int(n[0])]) * (1 << 20))\n"
    "            print('size', os.path.getsize(p), flush=True)\n"
    "        except OSError as e:\n"
    "            print(errno.errorcode[e.errno], os.path.getsize(p), flush=True)\n"
    "    elif word == 'close':\n"
    "        os.close(fd)\n"
    "        fd = None\n"
    "        print('closed', flush=True)\n"
    "    else:\n"
    "        print(hashlib.sha256(open(p, 'rb').read()).hexdigest(), flush=True)\n"
)


@pytest.fixture(scope="module")
def limited_cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes; node 3 in another partition (2), taking -G class 5.  Node 1's
    processes may keep 16 MiB of private files at home, 4 in the local cluster
    (node 2: its partition), 2 on the grid (node 3)."""
    cluster = bring_up(3, start_agents=False)
    try:
        for k in (1, 2, 3):
            config = cluster.node_path(k, "/etc/mosix/mosixd.toml")
            node3 = 'name = "node3"\n'
            head, _, entry = config.read_text().rpartition(node3)  # its [[cluster.node]]
            text = head + node3 + "partition = 2\nclasses = [5]\n" + entry
            if k == 1:
                text += "[private]\nhome_mb = 16\ncluster_mb = 4\ngrid_mb = 2\n"
            config.write_text(text)
        for k in (1, 2, 3):
            cluster.start_agent(k)

        def all_up() -> bool:
            log = cluster.agent_log(1).read_text(errors="replace")
            return all(f"node {j} (node{j}, {cluster.address(j)}) is up" in log for j in (2, 3))

        wait_until(all_up, what="node 1 hears from nodes 2 and 3")
        yield cluster
    finally:
        cluster.down()


def step(proc: subprocess.Popen[str], line: str) -> str:
    """One line to the program (STEPS), its one-line answer."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline()


def test_away_a_process_over_the_cluster_maximum_comes_home_at_its_close(
    limited_cluster: LocalCluster,
) -> None:
    cluster = limited_cluster
    d = "/tmp/private-limit"
    for node in (1, 2):
        cluster.node_path(node, d).mkdir()
    with mosrun_at_home(cluster, [f"-X{d}", *python(STEPS), d]) as proc:
        assert proc.stdin is not None and proc.stdout is not None

        assert proc.stdout.readline() == "started\n", proc.stderr.read() if proc.stderr else ""
        moved(cluster, proc, "2")
        # 3 MiB: over the grid's 2, below the cluster's 4: it stays
        assert step(proc, "write 3") == f"size {3 * MIB}\n"
        assert step(proc, "close") == "closed\n"
        assert len(step(proc, "digest")) == 65  # a round trip through its supervisor
        assert where(cluster, proc.pid) == "node2"
        # past the cluster's maximum with the file open: it cannot move yet, and
        # there it holds no more than home's 16 MiB (a full disk beyond)
        assert step(proc, "write 14") == f"ENOSPC {16 * MIB}\n"
        assert len(step(proc, "digest")) == 65
        assert where(cluster, proc.pid) == "node2"
        # the close lets it go: home, by itself, with its file
        assert step(proc, "close") == "closed\n"
        wait_until(lambda: where(cluster, proc.pid) == "home", what="the process at home")
        content = bytes([68]) * (3 * MIB) + bytes([79]) * (13 * MIB)
        assert private_listing(proc.pid, d) == {"data": content}
        assert step(proc, "digest") == hashlib.sha256(content).hexdigest() + "\n"
        out, err = proc.communicate("", timeout=60)
        assert (proc.returncode, out, err) == (0, "", "")
    for node in (1, 2):
        assert list(cluster.node_path(node, d).iterdir()) == []


def test_a_process_moved_with_more_than_the_cluster_maximum_goes_home_at_its_next_event(
    limited_cluster: LocalCluster,
) -> None:
    cluster = limited_cluster
    d = "/tmp/private-back"
    for node in (1, 2):
        cluster.node_path(node, d).mkdir()
    with mosrun_at_home(cluster, [f"-X{d}", *python(STEPS), d]) as proc:
        assert proc.stdin is not None and proc.stdout is not None

        assert proc.stdout.readline() == "started\n", proc.stderr.read() if proc.stderr else ""
        assert step(proc, "write 5") == f"size {5 * MIB}\n"
        assert step(proc, "close") == "closed\n"
        moved(cluster, proc, "2")  # it goes (home may send it) ...
        digest = hashlib.sha256(bytes([70]) * (5 * MIB)).hexdigest() + "\n"
        assert step(proc, "digest") == digest  # ... and the close of a private file there
        wait_until(lambda: where(cluster, proc.pid) == "home", what="the process at home")
        out, err = proc.communicate("digest\n", timeout=60)
        assert (proc.returncode, out, err) == (0, digest, "")


def test_on_the_grid_the_grid_maximum_holds(limited_cluster: LocalCluster) -> None:
    cluster = limited_cluster
    d = "/tmp/private-grid"
    for node in (1, 3):
        cluster.node_path(node, d).mkdir()
    with mosrun_at_home(cluster, ["-G5", f"-X{d}", *python(STEPS), d]) as proc:
        assert proc.stdin is not None and proc.stdout is not None

        assert proc.stdout.readline() == "started\n", proc.stderr.read() if proc.stderr else ""
        moved(cluster, proc, "3")
        assert step(proc, "write 1") == f"size {MIB}\n"
        assert step(proc, "close") == "closed\n"
        assert len(step(proc, "digest")) == 65
        assert where(cluster, proc.pid) == "node3"  # 1 MiB: below the grid's 2
        # 3 MiB in all: below the cluster's 4, over the grid's 2
        assert step(proc, "write 2") == f"size {3 * MIB}\n"
        assert step(proc, "close") == "closed\n"
        wait_until(lambda: where(cluster, proc.pid) == "home", what="the process at home")
        content = bytes([66]) * MIB + bytes([67]) * (2 * MIB)
        out, err = proc.communicate("digest\n", timeout=60)
        assert (proc.returncode, out, err) == (0, hashlib.sha256(content).hexdigest() + "\n", "")
