"""mosix-slurm without a Slurm cluster: host lists as scontrol expands them, and the
one-line refusals (outside a job, bad names, bad options), each with its status."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mosix.slurm.hostlist import HostListError, expand
from mosix.slurm.job import current_job

LISTS = [
    "node1",
    "node[1-3]",
    "node[1-3,7],gpu[01-02]",
    "r[1-2]n[08-10]",
    "a,b[9-11],c",
    "n[001-003,010]",
]


# scontrol wants a configuration even to expand a list; it asks no controller for that
MINIMAL_CONF = "ClusterName=x\nSlurmctldHost=localhost\nNodeName=a\nPartitionName=p Nodes=a\n"


@pytest.mark.parametrize("text", LISTS)
def test_expand_as_scontrol_does(text: str, tmp_path: Path) -> None:
    if shutil.which("scontrol") is None:
        pytest.skip("scontrol is not installed (apt-get install slurm-client)")
    conf = tmp_path / "slurm.conf"
    conf.write_text(MINIMAL_CONF)
    said = subprocess.run(
        ["scontrol", "show", "hostnames", text],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SLURM_CONF": str(conf)},
    )
    assert expand(text) == said.stdout.split()


@pytest.mark.parametrize("text", ["node[1-", "node]1[", "node[3-1]", "node[a-b]", "a,,b", "x[[1]]"])
def test_malformed_lists_are_refused(text: str) -> None:
    with pytest.raises(HostListError):
        expand(text)


def tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mosix.slurm.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def outside_a_job() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}


def test_outside_a_job_one_line_125() -> None:
    for args in (["run", "true"], ["mosrun", "p1", "--", "true"], ["agent"]):
        done = tool(*args, env=outside_a_job())
        assert done.returncode == 125, args
        assert done.stderr.count("\n") == 1 and "SLURM_JOB_ID is not set" in done.stderr
        assert "Traceback" not in done.stderr


def test_bad_names_and_options(tmp_path: Path) -> None:
    env = {**outside_a_job(), "SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-2]"}
    env["MOSIX_SLURM_DIR"] = str(tmp_path)
    for args, words in (
        (["mosrun", "../x", "--", "true"], "a program's name"),
        (["run", "--signal", "KILL", "true"], "not a signal to catch"),
        (["run", "--signal", "NOPE", "true"], "not a signal to catch"),
        (["run", "--lost-after", "0", "true"], "want 1 second or more"),
        (["hostnames", "n[2-1]"], "runs backwards"),
        (["run", "true"], "SLURMD_NODENAME=''"),  # salloc's shell, not on a node of the job
    ):
        done = tool(*args, env=env)
        assert done.returncode == 125, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert not (tmp_path / "job7").exists()  # nothing made for a refused command


def test_job_from_environment() -> None:
    env = {
        "SLURM_JOB_ID": "12345",
        "SLURM_JOB_NODELIST": "c[1-4]",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_RESTART_COUNT": "2",
        "MOSIX_SLURM_DIR": "/shared/ckpt",
    }
    job = current_job(env)
    assert (job.job_id, job.node_count, job.restarted) == (12345, 4, True)
    assert job.directory == Path("/shared/ckpt/job12345")
    assert job.port == 20000 + 12345 % 20000
    with pytest.raises(Exception, match="not a number"):
        current_job({**env, "SLURM_RESTART_COUNT": "x"})
