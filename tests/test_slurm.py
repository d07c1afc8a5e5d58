"""MOSIX inside Slurm jobs, against a real slurmctld and a slurmd per node (support/slurm.py).

A job script of ``sbatch -N3`` runs ``mosix-slurm run``: the three allocated
nodes become the job's cluster, its six CPU-bound programs spread over them;
the warning signal (what ``--signal=B:USR1@S`` sends the batch shell) checkpoints
them and requeues the job, which resumes them with byte-identical output; a node
of the allocation killed under a checkpointed program resumes it at home.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import node_programs
from support.slurm import SlurmCluster
from support.waiting import wait_until

pytestmark = pytest.mark.slow  # each test runs a Slurm job of 20-60 s

PROGRAMS = 6
SPINS = "10000000"  # about 20 ms of work per line


@pytest.fixture(scope="module")
def work_program() -> Iterator[Path]:
    with node_programs("slurm", {"slurm_work": ["slurm_work.c", "-O2"]}) as directory:
        yield directory / "slurm_work"


@pytest.fixture
def workdir(slurm3: SlurmCluster, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A job's submit directory, seen by every node (the job directory lies in it)."""
    path = slurm3.directory / "work" / request.node.name
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        slurm3.cancel_all()


def expected(program: Path, name: str, lines: int) -> bytes:
    """What the program prints when it runs natively, uninterrupted."""
    return subprocess.run(
        [str(program), name, str(lines), SPINS], capture_output=True, check=True
    ).stdout


def job_script(program: Path, lines: int, run_options: str = "", mosrun_options: str = "") -> str:
    """Six programs started by the job script, each by name, each its own output file."""
    return f"""#!/bin/bash
exec mosix-slurm run {run_options} bash -c '
echo "run ${{SLURM_RESTART_COUNT:-0}}"
for i in $(seq {PROGRAMS}); do
    mosix-slurm mosrun p$i -o out.$i -- {mosrun_options} {program} p$i {lines} {SPINS} &
done
wait
echo "all done"'
"""


def job_agent_env(job_id: int) -> list[str]:
    """``env`` words that point a tool at the job's agent on node 1."""
    return ["env", f"MOSIX_RUN_DIR=/run/mosix/slurm-job{job_id}"]


def where_all(slurm: SlurmCluster, job_id: int) -> dict[str, str]:
    """mosps at the job's home node: program name -> WHERE."""
    listing = slurm.cluster.run(
        1, [*job_agent_env(job_id), "mosps"], capture_output=True, text=True, timeout=60
    )
    found = {}
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6].endswith("slurm_work"):
            found[fields[7]] = fields[3]
    return found


def output_lines(workdir: Path, i: int) -> int:
    try:
        return (workdir / f"out.{i}").read_bytes().count(b"\n")
    except OSError:
        return 0


def test_six_programs_spread_over_the_allocation(
    slurm3: SlurmCluster, work_program: Path, workdir: Path
) -> None:
    lines = 80
    job = slurm3.sbatch(job_script(work_program, lines), workdir, "-N3")
    seen: set[str] = set()

    def spread() -> bool:
        seen.update(where_all(slurm3, job).values())
        return {"home", "node2", "node3"} <= seen

    wait_until(spread, 120, "the job's programs at home, on node2 and on node3", period=1.0)
    assert len(job_agents(slurm3, job)) == 3  # one per node while the job runs
    state = slurm3.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED"}, 240)
    log = (workdir / "job.out").read_text()
    assert state == "COMPLETED", log
    assert "all done" in log
    for i in range(1, PROGRAMS + 1):
        assert (workdir / f"out.{i}").read_bytes() == expected(work_program, f"p{i}", lines)
    wait_until(lambda: not job_agents(slurm3, job), 30, "the job's agents gone with the job")
    for k in slurm3.cluster.numbers:  # each logged to its node, and stopped in order
        agent_log = slurm3.cluster.node_path(k, f"/run/mosix/slurm-job{job}/mosixd.log")
        logged = agent_log.read_text()
        assert f"node {k} (node{k}) listening" in logged and "stopped" in logged, logged


def job_agents(slurm: SlurmCluster, job_id: int) -> list[int]:
    """Pids of the job's agents still alive on any node."""
    mark = f"job{job_id}/agents/node".encode()
    found = []
    for k in slurm.cluster.numbers:
        for pid in slurm.cluster.processes(k):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if mark in cmdline:
                found.append(pid)
    return found


def test_warning_checkpoints_requeues_and_resumes(
    slurm3: SlurmCluster, work_program: Path, workdir: Path
) -> None:
    lines = 120
    options = ("-N3", "--requeue", "--open-mode=append")  # the log of every run of the job
    job = slurm3.sbatch(job_script(work_program, lines), workdir, *options)
    wait_until(
        lambda: all(output_lines(workdir, i) >= 15 for i in range(1, PROGRAMS + 1)),
        120,
        "every program 15 lines into its work",
        period=0.5,
    )

    def away() -> bool:
        return bool({"node2", "node3"} & set(where_all(slurm3, job).values()))

    wait_until(away, 120, "a program away, to be checkpointed there", period=1.0)
    # What Slurm sends the batch shell at --signal=B:USR1@SECONDS before the end.
    warned = slurm3.run(["scancel", "--signal=USR1", "--batch", str(job)])
    assert warned.returncode == 0, warned.stderr
    wait_until(lambda: slurm3.job(job).get("Restarts") == "1", 120, "the job requeued")
    state = slurm3.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED"}, 300)
    log = (workdir / "job.out").read_text()
    assert state == "COMPLETED", log
    assert "run 0" in log and "run 1" in log and "all done" in log
    assert f"{PROGRAMS} processes checkpointed; requeueing" in log
    assert log.count(": resumes from ") == PROGRAMS, log
    for i in range(1, PROGRAMS + 1):
        assert (workdir / f"out.{i}").read_bytes() == expected(work_program, f"p{i}", lines), i


def test_lost_node_resumes_at_home(slurm3: SlurmCluster, work_program: Path, workdir: Path) -> None:
    """Last in the module: node 3 stays dead."""
    lines = 600
    script = f"""#!/bin/bash
exec mosix-slurm run --lost-after 3 mosix-slurm mosrun lone -o out.1 -- -3 \\
    {work_program} p1 {lines} {SPINS}
"""
    job = slurm3.sbatch(script, workdir, "-N3", "--no-kill")
    try:
        wait_until(lambda: where_all(slurm3, job).get("p1") == "node3", 120, "p1 on node 3")
    except AssertionError as e:
        log = workdir / "job.out"
        raise AssertionError(f"{e}\n{log.read_text() if log.exists() else 'no job.out'}") from None
    wait_until(lambda: output_lines(workdir, 1) >= 20, 120, "p1 20 lines into its work")
    listing = slurm3.cluster.run(1, [*job_agent_env(job), "mosps"], capture_output=True, text=True)
    pid = next(line.split()[0] for line in listing.stdout.splitlines() if "slurm_work" in line)
    saved = slurm3.cluster.run(
        1, [*job_agent_env(job), "migrate", pid, "checkpoint"], capture_output=True, text=True
    )
    assert saved.returncode == 0, saved.stderr
    slurm3.cluster.kill_node(3)
    state = slurm3.wait_state(job, {"COMPLETED", "FAILED", "CANCELLED"}, 300)
    log = (workdir / "job.out").read_text()
    assert state == "COMPLETED", log
    assert "node 3 (node3, 10.77.0.3), where it ran, is gone" in log
    assert "it resumes at home from" in log
    # Byte for byte an uninterrupted run: the deputy set the files back to the
    # checkpoint's offsets before resuming, so nothing written after it is repeated.
    assert (workdir / "out.1").read_bytes() == expected(work_program, "p1", lines)
