"""The Slurm job we run in: what its environment says, and its directories.

The job directory (``$MOSIX_SLURM_DIR``, default ``mosix-slurm`` in the job's
working directory, where ``mosix-slurm run`` starts: sbatch's ``-D``, else the
submit directory; then ``job{ID}``) must be on a file system every allocated node sees, as the
submit directory usually is: it holds the job's cluster secret (0600), its
checkpoints (kept across requeues: the job id stays), the programs that have
finished, and the mark that a requeue is under way.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mosix.exits import EXIT_USAGE, Failure

DIR_ENV = "MOSIX_SLURM_DIR"
PORT_ENV = "MOSIX_SLURM_PORT"
PORT_BASE = 20000  # the job's agents listen on PORT_BASE + job id % PORT_SPAN
PORT_SPAN = 20000


class JobError(Failure):
    pass


@dataclass(frozen=True)
class SlurmJob:
    job_id: int
    node_list: str  # SLURM_JOB_NODELIST, not expanded
    node_count: int
    restart_count: int  # SLURM_RESTART_COUNT: 0 the first time, then 1, 2, ... after requeues
    directory: Path  # the job directory (see the module's docstring)
    port: int

    @property
    def restarted(self) -> bool:
        return self.restart_count > 0

    @property
    def checkpoints(self) -> Path:
        return self.directory / "checkpoints"

    @property
    def finished(self) -> Path:
        """One file per program that ended (not by a requeue): NAME, holding its status."""
        return self.directory / "finished"

    @property
    def secret(self) -> Path:
        return self.directory / "cluster.secret"

    @property
    def requeueing(self) -> Path:
        """Present from the warning's checkpoints until the job runs again."""
        return self.directory / "requeueing"


def _number(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None and default is not None:
        return default
    if text is None:
        raise JobError(f"{name} is not set: run this inside a Slurm job (sbatch, salloc)", 125)
    if not text.strip().isdigit():
        raise JobError(f"{name}={text!r}: not a number", EXIT_USAGE)
    return int(text)


def current_job(env: Mapping[str, str] | None = None) -> SlurmJob:
    """The job this process runs in, from its environment."""
    env = os.environ if env is None else env
    job_id = _number(env, "SLURM_JOB_ID")
    node_list = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not node_list:
        raise JobError("SLURM_JOB_NODELIST is not set: run this inside a Slurm job", EXIT_USAGE)
    base = env.get(DIR_ENV) or os.path.join(os.getcwd(), "mosix-slurm")
    if not os.path.isabs(base):
        raise JobError(f"{DIR_ENV}={base!r}: must be an absolute path", EXIT_USAGE)
    port = _number(env, PORT_ENV, PORT_BASE + job_id % PORT_SPAN)
    if not 1 <= port <= 65535:
        raise JobError(f"{PORT_ENV}={port}: not a TCP port", EXIT_USAGE)
    return SlurmJob(
        job_id=job_id,
        node_list=node_list,
        node_count=_number(env, "SLURM_JOB_NUM_NODES", 0) or _number(env, "SLURM_NNODES", 1),
        restart_count=_number(env, "SLURM_RESTART_COUNT", 0),
        directory=Path(base) / f"job{job_id}",
        port=port,
    )


def _own_directory(path: Path) -> None:
    """``path`` as a directory of this user's, 0700, made if missing (never through a symlink)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise JobError(f"{path}: {e.strerror}", EXIT_USAGE) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise JobError(f"{path}: not a directory of this user's", EXIT_USAGE)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def prepare(job: SlurmJob) -> None:
    """The job directory and its parts, this user's only (the base above may be shared)."""
    try:
        job.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise JobError(f"{job.directory.parent}: {e.strerror}", EXIT_USAGE) from None
    for path in (job.directory, job.checkpoints, job.finished):
        _own_directory(path)
