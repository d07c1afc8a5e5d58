"""A program's own checkpoint request made away from home, in a real 3-node test cluster.

The manual's checkpoint request from within the program (mosix_checkpoint.h's
call, or "1" written to /proc/self/checkpoint) is served where the process
runs as ``migrate PID checkpoint`` is: the copy on node 2 is captured there,
the image is written at home to the file -C names, and ``mosrun -R``
recovers it with output byte-identical to an uninterrupted run.

The program (cprogs/awayself.c) starts at node 1 and waits at a gate after
line K; the test moves it to node 2, opens the gate, and the program asks for
its checkpoint there and goes on to the end.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import migrate, node_programs, where
from test_ckpt_away import taken_away
from test_migration_faults import EVENT_TIMEOUT, Program

from mosix.ckpt import trigger
from mosix.ckpt.image import read_head_from
from mosix.testcluster import LocalCluster

LINES, AT = 300, 120
STATUS = 7  # awayself's exit status


@pytest.fixture(scope="module")
def awayself() -> Iterator[str]:
    include = f"-I{trigger.include_dir()}"
    with node_programs("awayself", {"awayself": ["-O0", include, "awayself.c"]}) as directory:
        yield str(directory / "awayself")


@pytest.fixture(scope="module")
def expected(awayself: str) -> bytes:
    """The file of an uninterrupted run, outside mosrun (where the request fails)."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        gate = Path(d, "gate")
        gate.touch()
        out = Path(d, "out")
        done = subprocess.run(
            [awayself, str(out), str(LINES), str(AT), str(gate), "call"],
            capture_output=True,
            text=True,
            timeout=EVENT_TIMEOUT,
            check=False,
        )
        assert done.returncode == STATUS, done
        return out.read_bytes()


@pytest.mark.parametrize("how", ["call", "proc", "file"])
def test_own_checkpoint_away_is_taken_there_and_recovers_at_home(
    cluster3: LocalCluster, awayself: str, expected: bytes, how: str
) -> None:
    name = f"own{how}"
    out, gate = f"/tmp/{name}.out", f"/tmp/{name}.gate"
    # "file": the program names its checkpoint file, relative to its cwd (/tmp, at home)
    image = f"{out}-own.1" if how == "file" else f"/tmp/{name}.1"
    for leftover in (out, gate, image, f"/tmp/{name}.1"):
        cluster3.node_path(1, leftover).unlink(missing_ok=True)
    argv = ["mosrun", "-L", f"-C/tmp/{name}", awayself, f"{name}.out", str(LINES), str(AT), gate]
    prog = Program(cluster3, 1, [*argv, how])
    assert prog.line() == f"at {AT}"
    moved = migrate(cluster3, prog.pid, "2")
    assert moved.returncode == 0, moved.stderr
    assert where(cluster3, prog.pid) == "node2"
    cluster3.node_path(1, gate).touch()
    said = prog.line()
    assert said == "checkpoint 0", prog.finish()
    lines, stderr, status = prog.finish()
    # taken there: it did not come home for it (it may end there before mosps could look)
    assert f"process {prog.pid} came home" not in cluster3.agent_log(1).read_text()
    assert (lines[-1], status, stderr) == ("done", STATUS, "")
    assert cluster3.node_path(1, out).read_bytes() == expected

    offset = taken_away(cluster3, image)  # at home, where -C (or the program) says
    assert how != "file" or not cluster3.node_path(1, f"/tmp/{name}.1").exists()
    assert offset == len(b"".join(expected.splitlines(keepends=True)[:AT]))
    with cluster3.node_path(1, out).open("r+b") as f:
        f.truncate(offset)
    recovered = cluster3.run(
        1, ["mosrun", f"-R{image}"], cwd="/tmp", capture_output=True, text=True, timeout=120
    )
    assert recovered.returncode == STATUS, recovered.stderr
    resumed = "checkpoint 0" if how == "proc" else "checkpoint 1"  # fclose says 0 either way
    assert recovered.stdout == f"{resumed}\ndone\n"
    assert cluster3.node_path(1, out).read_bytes() == expected


def test_a_shells_echo_to_proc_self_checkpoint_away(cluster3: LocalCluster) -> None:
    """``echo 1 > /proc/self/checkpoint`` from a shell moved to node 2 (MOSIX's own
    way from any language): the shell is checkpointed there, written at home."""
    image, out = "/tmp/ownshell.1", "/tmp/ownshell.out"
    cluster3.node_path(1, image).unlink(missing_ok=True)
    # its output to a file: the shell keeps a copy of descriptor 1 while the
    # redirection lasts, and a copy of a pipe cannot be checkpointed (the manual)
    script = f"echo waiting; read go; exec >{out}; echo 1 > /proc/self/checkpoint; echo status $?"
    prog = Program(cluster3, 1, ["mosrun", "-L", "-C/tmp/ownshell", "sh", "-c", script])
    assert prog.line() == "waiting"
    moved = migrate(cluster3, prog.pid, "2")
    assert moved.returncode == 0, moved.stderr
    assert where(cluster3, prog.pid) == "node2"
    prog.go()
    lines, stderr, status = prog.finish()
    assert (lines, stderr, status) == (["waiting"], "", 0)
    assert cluster3.node_path(1, out).read_text() == "status 0\n"
    head = read_head_from(str(cluster3.node_path(1, image)))
    assert head.pid == prog.pid and not cluster3.node_path(2, image).exists()
