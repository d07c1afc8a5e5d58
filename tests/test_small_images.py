"""Small images: a checkpoint file refers to the unchanged pages of libraries and
the executable instead of storing them; a move still sends them.

Real agent, real mosrun, a real program (tests/cprogs/small_image.c) linked with
a test-built shared library (tests/cprogs/small_image_lib.c) whose 512 KiB table
it has read: the table's pages and libc's are file pages the image refers to.
Recovery maps them from the files; a library that is gone, rebuilt, or changed in
place (same size and modification time) is refused in one line naming it, and
the image stays as it was: with the library back, the recovery works.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent
from support.cbuild import build_c
from support.clusters import mosrun_at_home, moved, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
CPROGS = REPO / "tests" / "cprogs"
LIB = "libsmall.so"
# What an image holds besides memory: the records' headers, PROCESS (with auxv),
# XSTATE, SIGACTIONS, the AREA and MAPFILE records with their paths.
METADATA = 64 << 10
REFUSED = 125


def build_library(directory: Path, seed: int) -> Path:
    out = directory / LIB
    flags = ["-O2", "-shared", "-fPIC", f"-Wl,-soname,{LIB}", f"-DSEED={seed}"]
    build_c(CPROGS / "small_image_lib.c", out, *flags)
    return out


def build_program(directory: Path, lib_dir: str) -> Path:
    """small_image linked with the library, which it finds in ``lib_dir`` (rpath)."""
    sources = [CPROGS / "small_image.c", directory / LIB]  # the library after the program
    flags = ["-O2", "-Wall", "-Wextra", "-Werror", f"-Wl,-rpath,{lib_dir}"]
    return build_c(sources, directory / "small_image", *flags)


@pytest.fixture
def ckagent(agent_base: Path) -> Iterator[Agent]:
    a = make_agent(agent_base)
    a.start()
    yield a
    cleanup(a)


@pytest.fixture
def work(agent_base: Path) -> Path:
    d = agent_base / "work"
    d.mkdir()
    d.chmod(0o755)
    build_library(d, seed=1)
    build_program(d, str(d))
    return d


def expected_output(agent: Agent, work: Path) -> tuple[str, str]:
    """The program's two lines when it runs uninterrupted."""
    result = agent.run("mosrun", str(work / "small_image"), input="x", cwd=work)
    assert result.returncode == 3, result.stderr
    paused, done = result.stdout.splitlines()
    return paused, done


def checkpointed(agent: Agent, work: Path) -> tuple[Path, int]:
    """Run the program under mosrun, checkpoint it once it has read its table, kill it.
    Returns the image and the program's anonymous memory then (bytes)."""
    p = agent.spawn(
        "mosrun",
        str(work / "small_image"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=work,
    )
    assert p.stdout is not None
    assert p.stdout.readline().startswith("paused ")
    maps = Path(f"/proc/{p.pid}/maps").read_text()
    assert str(work / LIB) in maps
    anonymous = anonymous_bytes(p.pid)
    result = agent.run("migrate", str(p.pid), "checkpoint", cwd=work)
    ckpt = work / f"ckpt.{p.pid}.1"
    assert result.stdout == f"{p.pid}: checkpoint 1 written to {ckpt}\n", result.stderr
    p.kill()
    p.wait()
    return ckpt, anonymous


def anonymous_bytes(pid: int) -> int:
    """Anonymous memory of the process (smaps_rollup): its own pages, the written
    pages of its file mappings included."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no Anonymous: line in /proc/{pid}/smaps_rollup")


def recover(agent: Agent, ckpt: Path) -> subprocess.CompletedProcess[str]:
    return agent.run("mosrun", f"-R{ckpt}", input="x", cwd="/")


def assert_refused_naming(result: subprocess.CompletedProcess[str], path: Path) -> None:
    assert result.returncode == REFUSED, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert str(path) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_image_holds_written_memory_only_and_recovers(ckagent: Agent, work: Path) -> None:
    _, done = expected_output(ckagent, work)
    ckpt, anonymous = checkpointed(ckagent, work)
    size = ckpt.stat().st_size
    # the library's 512 KiB table, libc's and the program's text are referenced
    assert size <= anonymous + METADATA, (size, anonymous)
    result = recover(ckagent, ckpt)
    assert (result.returncode, result.stdout, result.stderr) == (3, f"{done}\n", "")


def test_a_recovered_process_is_checkpointed_and_recovered_again(
    ckagent: Agent, work: Path
) -> None:
    """Its libraries are mapped from their files again: a second image refers to them too."""
    _, done = expected_output(ckagent, work)
    ckpt, anonymous = checkpointed(ckagent, work)
    r = ckagent.spawn("mosrun", f"-R{ckpt}", stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/")
    lib = str(work / LIB)
    wait_until(lambda: lib in Path(f"/proc/{r.pid}/maps").read_text(), what="library mapped")
    result = ckagent.run("migrate", str(r.pid), "checkpoint", cwd=work)
    assert result.returncode == 0, result.stderr
    again = Path(result.stdout.split()[-1])  # the series goes on: ckpt.PID.2
    assert again != ckpt and again.parent == work, result.stdout
    r.kill()
    r.wait()
    assert again.stat().st_size <= anonymous + METADATA
    result = recover(ckagent, again)
    assert (result.returncode, result.stdout, result.stderr) == (3, f"{done}\n", "")


def test_an_execute_only_program_is_stored_and_recovers(
    ckagent: Agent, work: Path, two_users: tuple[str, str]
) -> None:
    """Recovery runs as the user, who cannot read a mode 0711 program: its pages are
    stored, not referenced (the library, which the user can read, still is)."""
    user = two_users[0]
    _, done = expected_output(ckagent, work)
    program = work / "small_image"
    program.chmod(0o711)
    shutil.chown(work, user=user)
    p = ckagent.spawn(
        "mosrun", str(program), user=user, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=work
    )
    assert p.stdout is not None
    assert p.stdout.readline().startswith("paused ")
    result = ckagent.run("migrate", str(p.pid), "checkpoint", cwd=work)
    assert result.returncode == 0, result.stderr
    ckpt = Path(result.stdout.split()[-1])
    p.kill()
    p.wait()
    result = ckagent.run("mosrun", f"-R{ckpt}", user=user, input="x", cwd="/")
    assert (result.returncode, result.stdout, result.stderr) == (3, f"{done}\n", "")


def test_recovery_refuses_a_missing_or_rebuilt_library_and_loses_nothing(
    ckagent: Agent, work: Path
) -> None:
    _, done = expected_output(ckagent, work)
    ckpt, _ = checkpointed(ckagent, work)
    image = ckpt.read_bytes()
    lib = work / LIB
    aside = work / "aside.so"
    lib.rename(aside)  # the same file (inode, size, mtime), elsewhere
    assert_refused_naming(recover(ckagent, ckpt), lib)
    build_library(work, seed=2)  # rebuilt: another file at the path
    assert_refused_naming(recover(ckagent, ckpt), lib)
    assert ckpt.read_bytes() == image
    aside.rename(lib)
    result = recover(ckagent, ckpt)
    assert (result.returncode, result.stdout, result.stderr) == (3, f"{done}\n", "")


def test_recovery_refuses_a_library_changed_in_place(ckagent: Agent, work: Path) -> None:
    """Same inode, size and modification time, other contents: the pages' hash differs."""
    _, done = expected_output(ckagent, work)
    ckpt, _ = checkpointed(ckagent, work)
    lib = work / LIB
    original = lib.read_bytes()
    st = lib.stat()
    (work / "other").mkdir()
    changed = build_library(work / "other", seed=2).read_bytes()
    assert len(changed) == len(original) and changed != original

    def rewrite(data: bytes) -> None:
        with open(lib, "r+b") as f:
            f.write(data)
        os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = lib.stat()
        assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)

    rewrite(changed)
    result = recover(ckagent, ckpt)
    assert_refused_naming(result, lib)
    assert "contents" in result.stderr
    rewrite(original)
    result = recover(ckagent, ckpt)
    assert (result.returncode, result.stdout, result.stderr) == (3, f"{done}\n", "")


# ------------------------------------------------------------------ a move sends the pages


@pytest.fixture(scope="module")
def node_private_program(cluster3: LocalCluster) -> Iterator[Path]:
    """The program where every node sees it (/var/tmp), its library only in node 1's
    private /tmp: a node that had to map it from the file could not."""
    directory = Path("/var/tmp") / f"mosix-smallimg-{os.getpid()}"
    directory.mkdir(mode=0o755)
    lib_dir = "/tmp/mosix-smallimg-lib"
    try:
        built = build_library(directory, seed=1)
        program = build_program(directory, lib_dir)
        private = cluster3.node_path(1, lib_dir)
        private.mkdir(mode=0o755)
        shutil.copy(built, private / LIB)
        built.unlink()
        assert not cluster3.node_path(2, lib_dir).exists()
        yield program
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_move_to_another_node_sends_the_file_pages(
    cluster3: LocalCluster, node_private_program: Path
) -> None:
    with mosrun_at_home(cluster3, [str(node_private_program)], "/tmp") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        paused = proc.stdout.readline()
        assert paused.startswith("paused "), proc.stderr.read() if proc.stderr else ""
        moved(cluster3, proc, "2")
        assert where(cluster3, proc.pid) == "node2"
        stdout, stderr = proc.communicate("x", timeout=120)
        assert proc.returncode == 3, stderr
    # the same sums as at home: the library's pages came with the process
    with mosrun_at_home(cluster3, [str(node_private_program)], "/tmp") as home:
        out, err = home.communicate("x", timeout=120)
        assert home.returncode == 3, err
    assert [paused.strip(), stdout.strip()] == out.splitlines()
