"""Checkpoints of a process while it runs on another node, in real test clusters.

The image is taken in two halves (the copy's memory on node 2, the deputy's
descriptors at home) and written at home as an ordinary checkpoint file of the
process's series; ``mosrun -R`` recovers it at home, and a process whose node
dies resumes from it.

The program (cprogs/awaycount.c) writes numbered lines to a file at home, each
depending on all before it and on a heap table; after line K it says "at K"
and waits, computing, until a gate file exists.  The expected file is that of
an uninterrupted run outside mosrun.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.clusters import node_programs
from support.waiting import wait_until
from test_migration_faults import (
    EVENT_TIMEOUT,
    LOST_LINE,
    Program,
    copy_pid,
    new_cluster,
    wait_for_log,
)

from mosix.ckpt.image import read_head_from
from mosix.testcluster import LocalCluster

LINES, AT = 400, 150
STATUS = 7  # awaycount's exit status
MINUTE_SECONDS = 1.0  # an -A minute in these clusters

MakeCluster = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def awaycount() -> Iterator[str]:
    with node_programs("awaycount", {"awaycount": ["-O0", "awaycount.c"]}) as directory:
        yield str(directory / "awaycount")


@pytest.fixture(scope="module")
def expected(awaycount: str) -> bytes:
    """The file of an uninterrupted run, outside mosrun."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        gate = Path(d, "gate")
        gate.touch()
        out = Path(d, "out")
        done = subprocess.run(
            [awaycount, str(out), str(LINES), str(AT), str(gate)],
            capture_output=True,
            text=True,
            timeout=EVENT_TIMEOUT,
            check=False,
        )
        assert done.returncode == STATUS and done.stdout == f"at {AT}\ndone\n", done
        return out.read_bytes()


def started_away(cluster: LocalCluster, awaycount: str, options: list[str], name: str) -> Program:
    """awaycount started at node 1 with -rnode2, running there, waiting at its gate."""
    argv = ["mosrun", "-rnode2", f"-C/tmp/{name}", *options, awaycount]
    prog = Program(
        cluster, 1, [*argv, f"/tmp/{name}.out", str(LINES), str(AT), f"/tmp/{name}.gate"]
    )
    copy_pid(cluster, 2, prog.pid)
    assert prog.line() == f"at {AT}"
    return prog


def taken_away(cluster: LocalCluster, path: str) -> int:
    """The offset of the output file in checkpoint ``path`` (at home), after
    checking it is a checkpoint of a process then running on node 2."""
    head = read_head_from(str(cluster.node_path(1, path)))
    assert not cluster.node_path(2, path).exists()
    wait_for_log(cluster, 2, rf"process {head.pid} of node 1 .*checkpoint image sent home")
    assert head.cwd == "/tmp"  # the deputy's, not the copy's
    (out,) = [f for f in head.files if f.path.endswith(".out")]
    assert out.fd == 3 and out.offset > 0
    return out.offset


def checkpointed_away(
    make_cluster: MakeCluster, awaycount: str, name: str, what: str
) -> tuple[LocalCluster, Program, int]:
    """awaycount started away (:func:`started_away`), then ``migrate PID WHAT``
    (checkpoint, chkexit) at home: the cluster, the program and the output file's
    offset in its checkpoint /tmp/NAME.1 (:func:`taken_away`)."""
    cluster = new_cluster(make_cluster)
    prog = started_away(cluster, awaycount, [], name)
    done = cluster.run(1, ["migrate", str(prog.pid), what], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return cluster, prog, taken_away(cluster, f"/tmp/{name}.1")


def open_gate(cluster: LocalCluster, name: str) -> None:
    cluster.node_path(1, f"/tmp/{name}.gate").touch()


def finishes_whole(cluster: LocalCluster, prog: Program, name: str, expected: bytes) -> None:
    """The gate opened, the run ends well and its file is that of a run outside mosrun."""
    open_gate(cluster, name)
    lines, stderr, status = prog.finish()
    assert (lines[-1], status, stderr) == ("done", STATUS, "")
    assert cluster.node_path(1, f"/tmp/{name}.out").read_bytes() == expected


def recovers_whole(
    cluster: LocalCluster, name: str, offset: int, expected: bytes
) -> subprocess.CompletedProcess[str]:
    """What the run wrote after its checkpoint /tmp/NAME.1 gone (the file cut back to
    ``offset``), ``mosrun -R`` at home writes it again: the file is ``expected``."""
    out = cluster.node_path(1, f"/tmp/{name}.out")
    with out.open("r+b") as f:
        f.truncate(offset)
    recovered = recover(cluster, f"/tmp/{name}.1")
    assert recovered.returncode == STATUS, recovered.stderr
    assert out.read_bytes() == expected
    return recovered


def recover(cluster: LocalCluster, path: str) -> subprocess.CompletedProcess[str]:
    return cluster.run(
        1, ["mosrun", f"-R{path}"], cwd="/tmp", capture_output=True, text=True, timeout=120
    )


def with_short_minutes(cluster: LocalCluster) -> None:
    """Node 1's agent with -A minutes of MINUTE_SECONDS."""
    config = cluster.node_path(1, "/etc/mosix/mosixd.toml")
    with config.open("a") as f:
        f.write(f"[checkpoint]\nminute_seconds = {MINUTE_SECONDS}\n")
    cluster.restart_agent(1)

    def node2_up() -> bool:
        text = cluster.agent_log(1).read_text(errors="replace")
        since_restart = text.rsplit("listening on /run/mosix/mosixd.sock", 1)[-1]
        return "node 2 (node2, 10.77.0.2) is up" in since_restart

    wait_until(node2_up, EVENT_TIMEOUT, what="node 1's new agent hears from node 2")


# ---------------------------------------------------------------- the tests


def test_migrate_checkpoint_away_recovers_at_home(
    make_cluster: MakeCluster,
    awaycount: str,
    expected: bytes,
) -> None:
    cluster, prog, offset = checkpointed_away(make_cluster, awaycount, "mc", "checkpoint")
    assert offset == len(b"".join(expected.splitlines(keepends=True)[:AT]))
    finishes_whole(cluster, prog, "mc", expected)
    recovered = recovers_whole(cluster, "mc", offset, expected)
    assert recovered.stdout == "done\n"


def test_periodic_checkpoint_away_recovers_at_home(
    make_cluster: MakeCluster,
    awaycount: str,
    expected: bytes,
) -> None:
    cluster = new_cluster(make_cluster)
    with_short_minutes(cluster)
    prog = started_away(cluster, awaycount, ["-A1", "-N2"], "pa")
    first = cluster.node_path(1, "/tmp/pa.1")
    wait_until(first.exists, EVENT_TIMEOUT, what="the first -A checkpoint")
    finishes_whole(cluster, prog, "pa", expected)
    offset = taken_away(cluster, "/tmp/pa.1")  # the last one written there
    recovers_whole(cluster, "pa", offset, expected)


def test_lost_node_resumes_from_checkpoint_taken_away(
    make_cluster: MakeCluster,
    awaycount: str,
    expected: bytes,
) -> None:
    cluster, prog, _ = checkpointed_away(make_cluster, awaycount, "ln", "checkpoint")
    cluster.kill_node(2)
    wait_for_log(cluster, 1, rf"process {prog.pid} resumes at home from /tmp/ln.1")
    open_gate(cluster, "ln")
    lines, stderr, status = prog.finish()
    assert status == STATUS, stderr
    assert lines == [f"at {AT}", "done"]
    errors = stderr.splitlines()
    assert len(errors) == 1 and LOST_LINE.match(errors[0]), stderr
    assert errors[0].endswith("; it resumes at home from /tmp/ln.1")
    assert cluster.node_path(1, "/tmp/ln.out").read_bytes() == expected


def test_chkexit_away_writes_then_ends(
    make_cluster: MakeCluster,
    awaycount: str,
    expected: bytes,
) -> None:
    cluster, prog, offset = checkpointed_away(make_cluster, awaycount, "cx", "chkexit")
    _, _, status = prog.finish()
    assert status == -signal.SIGKILL
    open_gate(cluster, "cx")
    recovered = recover(cluster, "/tmp/cx.1")
    assert recovered.returncode == STATUS, recovered.stderr
    out = cluster.node_path(1, "/tmp/cx.out").read_bytes()
    assert out == expected and offset < len(out)


def test_a_recovery_with_a_node_option_runs_on_that_node(
    make_cluster: MakeCluster,
    awaycount: str,
    expected: bytes,
) -> None:
    """mosrun -R{file} -2: the manual's location options apply to a recovery too."""
    cluster = new_cluster(make_cluster)
    argv = ["mosrun", "-C/tmp/rp", awaycount, "/tmp/rp.out", str(LINES), str(AT), "/tmp/rp.gate"]
    prog = Program(cluster, 1, argv)
    assert prog.line() == f"at {AT}"
    done = cluster.run(1, ["migrate", str(prog.pid), "chkexit"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert prog.finish()[2] == -signal.SIGKILL
    recovered = Program(cluster, 1, ["mosrun", "-R/tmp/rp.1", "-2"])
    copy_pid(cluster, 2, recovered.pid)  # it runs there, its home at node 1
    open_gate(cluster, "rp")
    lines, stderr, status = recovered.finish()
    assert (lines, status, stderr) == (["done"], STATUS, "")
    assert cluster.node_path(1, "/tmp/rp.out").read_bytes() == expected
