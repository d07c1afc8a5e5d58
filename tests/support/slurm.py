"""A real Slurm on the namespaces test cluster: slurmctld on node 1, a slurmd per node.

    def test_x(slurm3): slurm3.sbatch(script, workdir) ...      # 3 nodes, for one module

Each node of the test cluster (tests/support/clusters.py) is a network and a
mount namespace; Slurm also wants each node's own host name, so each daemon
starts in a UTS namespace of its own named ``nodek`` (``unshare --uts``), and
the jobs, started by slurmd, share it.  No cgroups: ``proctrack/linuxproc``,
``task/none``.  One munged (its own key and socket, ``AuthInfo=socket=``)
serves every node: it runs in node 1 and its socket lies in the cluster's
shared directory ``/var/tmp/mosix-slurm-NAME`` (where slurm.conf, the
controller's state and log, and the jobs' work lie too; each slurmd keeps its
spool and log in its node's private /tmp).  Requeued jobs wait
``cred_expire`` (10 s here, 120 by default) and the scheduler runs every
second, so a requeue takes seconds, not minutes.  Every daemon lives in a
node's namespaces, so taking the test cluster down ends them all.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosix.testcluster import LocalCluster
from support.clusters import bring_up
from support.waiting import wait_until

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "srun", "scancel")
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0


@functools.cache
def skip_reason() -> str | None:
    """Why no Slurm can be run here (None: it can)."""
    for program in DAEMONS:
        if shutil.which(program) is None:
            return f"Slurm tests need {program} (apt-get install slurm-wlm munge)"
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"UTS namespaces refused: {probe.stderr.strip()}"
    return None


def slurm_conf(directory: Path, nodes: int, cpus: int) -> str:
    last = nodes
    return f"""\
ClusterName=mosixtest
SlurmctldHost=node1(10.77.0.1)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10,socket={directory}/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation={directory}/state
SlurmdSpoolDir=/tmp/slurmd
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile=/tmp/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile=/tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/linear
MpiDefault=none
ReturnToService=2
SlurmdTimeout=10
InactiveLimit=0
MinJobAge=600
KillWait=5
NodeName=node[1-{last}] NodeAddr=10.77.0.[1-{last}] CPUs={cpus} State=UNKNOWN
PartitionName=main Nodes=node[1-{last}] Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """Slurm's daemons on the nodes of ``cluster``; commands run inside node 1."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.directory = Path(f"/var/tmp/mosix-slurm-{cluster.layout.name}")
        self.conf = self.directory / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What Slurm's commands and the jobs get: this Slurm, this installation's commands."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def in_node(self, k: int, argv: list[str], hostname: str | None = None) -> list[str]:
        """``argv`` inside node k; with ``hostname``, in a UTS namespace of that name."""
        if hostname is not None:
            argv = ["unshare", "--uts", "sh", "-ec", 'hostname "$0"; exec "$@"', hostname, *argv]
        return self.cluster.command(k, argv)

    def up(self) -> SlurmCluster:
        shutil.rmtree(self.directory, ignore_errors=True)
        (self.directory / "state").mkdir(parents=True, mode=0o755)
        key = self.directory / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        cpus = os.cpu_count() or 1
        self.conf.write_text(slurm_conf(self.directory, self.cluster.nodes, cpus))
        d = self.directory
        self._start(
            self.in_node(
                1,
                [
                    "munged",
                    "--force",
                    f"--socket={d}/munge.sock",
                    f"--key-file={key}",
                    f"--pid-file={d}/munged.pid",
                    f"--log-file={d}/munged.log",
                    f"--seed-file={d}/munged.seed",
                ],
            ),
            "munged",
        )
        self._start(self.in_node(1, ["slurmctld"], hostname="node1"), "slurmctld")
        for k in self.cluster.numbers:
            self._start(self.in_node(k, ["slurmd"], hostname=f"node{k}"), f"slurmd of node {k}")
        wait_until(self.all_idle, START_TIMEOUT, "every slurmd registered, idle", period=0.5)
        return self

    def _start(self, argv: list[str], what: str) -> None:
        done = subprocess.run(
            argv, env=self.env(), capture_output=True, text=True, timeout=START_TIMEOUT
        )
        if done.returncode != 0:
            pytest.fail(f"{what}: status {done.returncode}: {done.stderr.strip()}")

    def down(self) -> None:
        """The directory; the daemons end with the test cluster's namespaces."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """A Slurm command (sbatch, scontrol, ...) inside node 1."""
        return subprocess.run(
            self.in_node(1, argv),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            **kwargs,  # type: ignore[call-overload]
        )

    def all_idle(self) -> bool:
        listing = self.run(["sinfo", "-h", "-N", "-o", "%N %t"])
        states = dict(line.split() for line in listing.stdout.splitlines() if line.strip())
        return len(states) == self.cluster.nodes and set(states.values()) == {"idle"}

    def sbatch(self, script: str, workdir: Path, *options: str) -> int:
        """Submit ``script`` (its text) from ``workdir``; the job id."""
        path = workdir / "job.sh"
        path.write_text(script)
        done = self.run(
            ["sbatch", "--parsable", "-D", str(workdir), "-o", str(workdir / "job.out"),
             *options, str(path)]
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict[str, str]:
        """``scontrol show job``'s fields (empty when Slurm no longer knows the job)."""
        shown = self.run(["scontrol", "show", "job", "-o", str(job_id)])
        return dict(re.findall(r"(\w+)=(\S*)", shown.stdout)) if shown.returncode == 0 else {}

    def state(self, job_id: int) -> str:
        return self.job(job_id).get("JobState", "")

    def wait_state(self, job_id: int, states: set[str], timeout: float) -> str:
        wait_until(
            lambda: self.state(job_id) in states,
            timeout,
            f"job {job_id} in {sorted(states)}",
            period=0.5,
        )
        return self.state(job_id)

    def cancel_all(self) -> None:
        self.run(["scancel", "--full", "--user=root"])


_seconds_in_slurm_tests: list[float] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "slurm3" in getattr(report, "fixturenames", ()) or "test_slurm.py" in report.nodeid:
        _seconds_in_slurm_tests.append(report.duration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the Slurm tests added to the run (CI prints it in each lane)."""
    if _seconds_in_slurm_tests:
        total = sum(_seconds_in_slurm_tests)
        terminalreporter.write_line(f"Slurm tests (test_slurm.py): {total:.0f} s in all")


def bring_up_slurm(nodes: int = 3) -> Iterator[SlurmCluster]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    cluster = bring_up(nodes)
    slurm = SlurmCluster(cluster)
    try:
        yield slurm.up()
    finally:
        try:
            slurm.cancel_all()
        finally:
            cluster.down()
            slurm.down()


@pytest.fixture(scope="module")
def slurm3(namespaces: None) -> Iterator[SlurmCluster]:
    """Slurm on a 3-node test cluster, for the tests of one module."""
    yield from bring_up_slurm(3)
