"""The job's agents: one ``mosixd`` per allocated node, its configuration and its start.

Each agent is the job's own: its run directory is node-local and named after
the job (``/run/mosix/slurm-job{ID}`` for root, ``/tmp/mosix-{uid}/slurm-job{ID}``
for a user), it listens on the job's port, and its map is the allocation.  A
system ``mosixd`` on the node (``/run/mosix/mosixd.sock``, port 2490) is left
alone: the job's mosruns find the job's agent through ``MOSIX_RUN_DIR``.

The configurations (``agents/node{k}.toml``) and the secret are written once by
``mosix-slurm run`` into the job directory; each node's task (``mosix-slurm
agent``, one per node through srun) picks its own by ``SLURMD_NODENAME`` and
becomes that node's mosixd, which writes ``ready`` to the task's stdout (the
pipe srun gives back to ``mosix-slurm run``) once it listens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from mosix.exits import EXIT_USAGE
from mosix.native_names import STORE_FILE_PAGES_ENV
from mosix.slurm.job import JobError, SlurmJob
from mosix.slurm.nodes import JobNode, node_names

DEFAULT_LOST_AFTER = 30.0
READY_FD = 3  # the task's stdout, moved here before mosixd takes fd 1 to /dev/null


def run_dir(job: SlurmJob, uid: int | None = None) -> Path:
    uid = os.geteuid() if uid is None else uid
    base = Path("/run/mosix") if uid == 0 else Path(f"/tmp/mosix-{uid}")
    return base / f"slurm-job{job.job_id}"


def config_path(job: SlurmJob, number: int) -> Path:
    return job.directory / "agents" / f"node{number}.toml"


def config_text(job: SlurmJob, nodes: list[JobNode], me: JobNode, lost_after: float) -> str:
    lines = [
        "[node]",
        f"number = {me.number}",
        f'name = "{me.name}"',
        "[paths]",
        f'run_dir = "{run_dir(job)}"',
        "[cluster]",
        f'secret_file = "{job.secret}"',
        f"port = {job.port}",
        f"lost_after = {lost_after}",
    ]
    for node in nodes:
        lines += [
            "[[cluster.node]]",
            f"number = {node.number}",
            f'address = "{node.address}"',
            f'name = "{node.name}"',
        ]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """``path`` replaced whole by ``text``, mode 0600 (never half-written, never another's)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_configs(job: SlurmJob, nodes: list[JobNode], lost_after: float) -> None:
    """A fresh secret for this run of the job and every node's configuration."""
    try:
        (job.directory / "agents").mkdir(mode=0o700, exist_ok=True)
        _write_private(job.secret, secrets.token_hex(32) + "\n")
        for node in nodes:
            _write_private(config_path(job, node.number), config_text(job, nodes, node, lost_after))
    except OSError as e:
        raise JobError(f"{job.directory}: {e.strerror}", EXIT_USAGE) from None


def mosixd_argv(config: Path) -> list[str]:
    found = shutil.which("mosixd")
    program = [found] if found else [sys.executable, "-m", "mosix.tools.mosixd"]
    return [*program, "--config", str(config), "--ready-fd", str(READY_FD)]


def own_number(job: SlurmJob) -> int:
    """This node's number in the job's cluster (by SLURMD_NODENAME, which Slurm sets)."""
    name = os.environ.get("SLURMD_NODENAME", "")
    names = node_names(job)
    if name not in names:
        raise JobError(f"SLURMD_NODENAME={name!r} is not a node of the job", EXIT_USAGE)
    return names.index(name) + 1


def become_agent(job: SlurmJob) -> NoReturn:
    """This node's task: exec its mosixd (foreground, logging to its run directory)."""
    number = own_number(job)
    directory = run_dir(job)
    argv = mosixd_argv(config_path(job, number))
    os.dup2(1, READY_FD)  # first: the log's descriptor below may be any free number
    try:
        directory.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700, parents=True, exist_ok=True)
        log = os.open(directory / "mosixd.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as e:
        raise JobError(f"{directory}: {e.strerror}", EXIT_USAGE) from None
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    for fd in {null, log} - {0, 1, 2, READY_FD}:
        os.close(fd)
    # A job's checkpoints may be resumed on another batch node after a requeue:
    # they hold every page rather than refer to this node's libraries.
    os.environ[STORE_FILE_PAGES_ENV] = "1"
    os.execv(argv[0], argv)
