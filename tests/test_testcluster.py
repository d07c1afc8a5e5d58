"""The local test cluster: real namespaces, links, private /tmp and one agent per node."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

from mosix.testcluster import LocalCluster
from mosix.testcluster.layout import BASE_DIR
from mosix.testcluster.mounts import mount_points
from mosix.testcluster.network import existing_netns

MakeCluster = Callable[..., LocalCluster]

# Listens on the node's cluster address; prints its port, then answers each
# connection with the node's address as the listener saw it.
LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    conn.sendall(conn.getsockname()[0].encode())
    conn.close()
"""

# Connects with a timeout; prints what came back, or why nothing did.
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as c:
        print("reply", c.recv(64).decode())
except OSError as e:
    print("failed", type(e).__name__)
"""


def listen(cluster: LocalCluster, k: int) -> tuple[subprocess.Popen[str], str]:
    proc = cluster.popen(
        k, [sys.executable, "-c", LISTENER, cluster.address(k)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    assert port.isdigit(), "the listener did not start"
    return proc, port


def connect(cluster: LocalCluster, k: int, address: str, port: str, timeout: float = 5.0) -> str:
    result = cluster.run(
        k,
        [sys.executable, "-c", CONNECT, address, port, str(timeout)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return str(result.stdout).strip()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


def test_nodes_reach_each_other_by_address(cluster3: LocalCluster) -> None:
    proc, port = listen(cluster3, 2)
    try:
        for k in (1, 3):
            assert connect(cluster3, k, "10.77.0.2", port) == "reply 10.77.0.2"
        # node 1's loopback is its own: node 2's listener is not there
        assert connect(cluster3, 1, "127.0.0.1", port) == "failed ConnectionRefusedError"
    finally:
        stop(proc)


def test_tmp_is_private_to_each_node(cluster3: LocalCluster) -> None:
    name = f"/tmp/mosix-testcluster-{uuid.uuid4().hex}"
    wrote = cluster3.run(1, ["sh", "-c", f"echo from node1 > {name}"], timeout=30)
    assert wrote.returncode == 0
    assert cluster3.node_path(1, name).read_text() == "from node1\n"
    assert cluster3.run(1, ["cat", name], capture_output=True, text=True).stdout == "from node1\n"
    assert cluster3.run(2, ["test", "-e", name]).returncode == 1
    assert not cluster3.node_path(2, name).exists()
    assert not os.path.exists(name)  # the host's /tmp


def test_run_mosix_and_etc_mosix_are_the_nodes_own(cluster3: LocalCluster) -> None:
    for inside in ("/run/mosix", "/etc/mosix"):
        seen = cluster3.run(3, ["stat", "-c", "%d", inside], capture_output=True, text=True)
        assert seen.returncode == 0, seen.stderr
        assert int(seen.stdout) == cluster3.node_path(3, inside).stat().st_dev
        assert int(seen.stdout) != cluster3.node_path(1, inside).stat().st_dev
    mountinfo = cluster3.run(3, ["cat", "/proc/self/mountinfo"], capture_output=True, text=True)
    assert str(BASE_DIR) not in mountinfo.stdout  # no way into another node's directories
    secret = cluster3.node_path(3, "/etc/mosix/cluster.secret")
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.read_text() == cluster3.node_path(1, "/etc/mosix/cluster.secret").read_text()


def test_each_agent_answers_on_its_own_socket(cluster3: LocalCluster) -> None:
    for k in cluster3.numbers:
        status = cluster3.run(k, ["mosctl", "status"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[0].split() == ["node:", str(k), f"(node{k})"]
        assert cluster3.agent_pid(k) in cluster3.processes(k)


def test_cut_blocks_traffic_and_heal_restores_it(cluster3: LocalCluster) -> None:
    proc, port = listen(cluster3, 3)
    try:
        assert connect(cluster3, 1, "10.77.0.3", port) == "reply 10.77.0.3"
        # nothing listens on port 9 of node 2: refused, so node 2 was reached
        assert connect(cluster3, 3, "10.77.0.2", "9") == "failed ConnectionRefusedError"
        cluster3.cut(3)
        try:
            assert not cluster3.link_is_up(3)
            for k, address, to in ((1, "10.77.0.3", port), (3, "10.77.0.2", "9")):
                outcome = connect(cluster3, k, address, to, timeout=1.0)
                assert outcome.startswith("failed") and "Refused" not in outcome
        finally:
            cluster3.heal(3)
        assert cluster3.link_is_up(3)
        assert connect(cluster3, 1, "10.77.0.3", port) == "reply 10.77.0.3"
    finally:
        stop(proc)


def test_shaped_link_carries_its_rate(cluster3: LocalCluster) -> None:
    cluster3.shape(2, rate_mbit=40)  # 5 MB/s
    try:
        shaped = cluster3.bandwidth(1, 2, 2_500_000)
    finally:
        cluster3.unshape(2)
    assert 2.5e6 < shaped < 7.5e6
    assert cluster3.bandwidth(1, 2, 8 << 20) > 4 * shaped


def test_kill_node_kills_every_process_of_the_node(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(2)
    child = cluster.popen(1, ["sleep", "600"])
    detached = cluster.run(
        1,
        ["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
    )
    orphan = int(detached.stdout)
    agent = cluster.agent_pid(1)
    assert {child.pid, orphan, agent} <= set(cluster.processes(1))
    survivor = cluster.agent_pid(2)

    assert cluster.kill_node(1) >= 3
    assert child.wait(timeout=30) == -9
    assert cluster.processes(1) == []
    assert cluster.agent_pid(1) is None
    assert cluster.agent_pid(2) == survivor  # the other node lives on

    restarted = cluster.restart_agent(1)
    assert restarted != agent
    status = cluster.run(1, ["mosctl", "status"], capture_output=True, text=True, timeout=60)
    assert status.stdout.startswith("node:       1 (node1)"), status.stderr


def test_restart_agent_replaces_a_running_agent(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(1)
    first = cluster.agent_pid(1)
    second = cluster.restart_agent(1)
    assert first is not None and second != first
    assert cluster.processes(1) == [second]


def leftovers(cluster: LocalCluster) -> list[str]:
    name = cluster.layout.name
    found = [ns for ns in existing_netns() if ns.startswith(f"{name}-")]
    found += [p for p in mount_points() if p.startswith(str(cluster.layout.directory))]
    if cluster.layout.directory.exists():
        found.append(str(cluster.layout.directory))
    return found


def test_down_leaves_nothing_behind(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(2)
    sleeper = cluster.popen(2, ["sh", "-c", "echo in && exec sleep 600"], stdout=subprocess.PIPE)
    assert sleeper.stdout is not None and sleeper.stdout.readline() == b"in\n"  # inside node 2
    pids = cluster.processes(1) + cluster.processes(2)
    assert len(pids) == 3 and leftovers(cluster)
    cluster.down()
    assert sleeper.wait(timeout=30) == -9
    assert leftovers(cluster) == []
    assert all(not Path(f"/proc/{pid}/ns/net").exists() for pid in pids)
    cluster.down()  # again: nothing to do, no error
    assert leftovers(cluster) == []


def test_up_removes_a_leftover_cluster_of_the_same_name(make_cluster: MakeCluster) -> None:
    first = make_cluster(3)
    old_agent = first.agent_pid(3)
    second = LocalCluster(2, first.layout.name, first.settings).up()  # as after a crash
    assert old_agent is not None and not Path(f"/proc/{old_agent}/ns/net").exists()
    assert second.agent_pid(2) is not None
    assert leftovers(second) and not any("node3" in x for x in leftovers(second))
    # make_cluster's teardown removes it (same name)


def tool_command() -> list[str]:
    found = shutil.which("mosix-testcluster")
    return [found] if found else [sys.executable, "-m", "mosix.testcluster.cli"]


def test_command_up_exec_status_down(namespaces: None) -> None:
    name = f"pt{os.getpid()}cli"
    tool = tool_command()

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*tool, *args], capture_output=True, text=True, timeout=120)

    try:
        up = call("up", "-n", "2", "--name", name)
        assert up.returncode == 0, up.stderr
        status = call("status", "--name", name)
        assert status.returncode == 0, status.stderr
        assert [line.split()[:3] for line in status.stdout.splitlines()] == [
            ["node1", "10.77.0.1", "up"],
            ["node2", "10.77.0.2", "up"],
        ]
        ran = call("exec", "--name", name, "2", "--", "sh", "-c", "mosctl status; exit 7")
        assert ran.returncode == 7
        assert ran.stdout.startswith("node:       2 (node2)")
        for bad in (["exec", "--name", name, "3", "--", "true"], ["exec", "--name", name, "1"]):
            refused = call(*bad)
            assert refused.returncode == 125
            assert len(refused.stderr.splitlines()) == 1, refused.stderr
            assert refused.stderr.startswith("mosix-testcluster: ")
    finally:
        down = call("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert call("status", "--name", name).returncode == 125


def test_an_installation_the_nodes_cannot_see_is_refused_in_one_line(tmp_path: Path) -> None:
    """mosix in a virtual environment under /tmp: each node has its own /tmp, so no mosixd."""
    venv = tmp_path / "venv"
    made = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    code = (  # this interpreter's packages (mosix among them) seen from the venv under /tmp
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "sys.argv = ['mosix-testcluster', 'up', '-n', '1', '--name', 'hidden']\n"
        "from mosix.testcluster.cli import main; main()\n"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *site.getsitepackages(), *sys.path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"mosix-testcluster: mosix is installed under /tmp ({venv}), which every node "
        "replaces with its own: install it elsewhere (e.g. a virtual environment under /var/tmp)"
    ]
    assert "hidden-hub" not in existing_netns()
