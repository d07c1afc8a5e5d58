"""mmap of a home file by a process running on another node, in a real test cluster.

The process's descriptors are its home's, so the remote kernel has no file to
map: mosix-remote fetches the bytes through the deputy and maps a memory file
of the same size in their place (csrc/remote/remote_filemap.c).  The program
(tests/cprogs/filemap.c) maps a file that exists only in the home node's
private /tmp (whole, at an offset and written to, past its end), makes the
calls mmap refuses, and dlopens a library that also exists only at home; its
output on node 2 must be the same as at home, and what it mapped must survive
coming home.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import migrate, node_programs

from mosix.testcluster import LocalCluster

TIMEOUT = 120
PAGE = os.sysconf("SC_PAGESIZE")
DATA, LIBRARY = "/tmp/filemap.data", "/tmp/libfilemap.so"


@pytest.fixture(scope="module")
def filemap(cluster3: LocalCluster) -> Iterator[Path]:
    builds = {
        "filemap": ["-O1", "filemap.c"],
        "libfilemap.so": ["-shared", "-fPIC", "filemap_lib.c"],
    }
    with node_programs("filemap", builds) as directory:
        data = cluster3.node_path(1, DATA)  # only the home node has them
        data.write_bytes(os.urandom(3 * PAGE + 1000))
        shutil.copy(directory / "libfilemap.so", cluster3.node_path(1, LIBRARY))
        yield directory / "filemap"
        data.unlink()
        cluster3.node_path(1, LIBRARY).unlink()


def fnv(data: bytes) -> str:
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def expected(data: bytes) -> str:
    part = b"X" * 16 + data[PAGE + 16 : 3 * PAGE]
    return (
        f"whole: {len(data)} bytes sum {fnv(data)}\n"
        f"part: sum {fnv(part)} first {data[PAGE]} file keeps 1\n"
        "tail: zero 1 sigbus 1\n"
        "pipe: No such device\n"
        "write-only: Permission denied\n"
        "closed: Bad file descriptor\n"
        "unaligned: Invalid argument\n"
        "dlopen: answer 42\n"
    )


@pytest.mark.parametrize("where", ["home", "node2"])
def test_maps_home_files_wherever_it_runs(
    cluster3: LocalCluster,
    filemap: Path,
    where: str,
) -> None:
    placement = ["-2"] if where == "node2" else []
    proc = cluster3.popen(
        1,
        ["mosrun", *placement, str(filemap), DATA, LIBRARY],
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    assert stdout == expected(cluster3.node_path(1, DATA).read_bytes()), stderr
    migrated = f"process {proc.pid} migrated to node 2" in cluster3.agent_log(1).read_text()
    assert migrated == (where == "node2")
    assert not cluster3.node_path(2, DATA).exists()


def test_what_it_mapped_away_comes_home_with_it(
    cluster3: LocalCluster,
    filemap: Path,
) -> None:
    proc = cluster3.popen(
        1,
        ["mosrun", "-2", str(filemap), DATA, LIBRARY, "again"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    data = cluster3.node_path(1, DATA).read_bytes()
    try:
        lines = [proc.stdout.readline() for _ in expected(data).splitlines()]
        assert "".join(lines) == expected(data)
        moved = migrate(cluster3, proc.pid, "home")
        assert moved.returncode == 0, moved.stderr
        proc.stdin.write("go\n")
        proc.stdin.close()
        rest = proc.stdout.read()
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, stderr
    part = b"X" * 16 + data[PAGE + 16 : 3 * PAGE]
    assert rest == f"again: whole {fnv(data)} part {fnv(part)}\n"
    assert f"process {proc.pid} came home from node 2" in cluster3.agent_log(1).read_text()
