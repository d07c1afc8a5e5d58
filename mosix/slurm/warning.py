"""What Slurm's warning (``--signal=B:USR1@SECONDS``) does: checkpoint the job, requeue it.

Every MOSIX process registered with the job's agent on the batch node (the
home of the job script's mosruns) is checkpointed into its series, where it
runs (at home, or away as ``migrate PID checkpoint`` does); then the job is
requeued (``scontrol requeue``), and Slurm stops it and later runs the job
script again, where ``mosix-slurm mosrun`` resumes each program.  The
``requeueing`` mark, made first, tells the wrappers that a program killed from
here on did not finish.
"""

from __future__ import annotations

import subprocess
import sys
import time

from mosix.agent_client import connect
from mosix.display import shown
from mosix.exits import Failure
from mosix.protocol import Checkpoint, Checkpointed, ListProcesses, Processes
from mosix.slurm.job import SlurmJob

CHECKPOINT_TIMEOUT = 600.0
REQUEUE_TIMEOUT = 60.0
ATTEMPTS = 4
RETRY_DELAY = 0.5  # seconds, growing with each attempt


def say(message: str) -> None:
    sys.stderr.write(f"mosix-slurm: {shown(message)}\n")
    sys.stderr.flush()


def job_pids() -> list[int]:
    """The MOSIX processes of this user that the job's agent (here) knows."""
    with connect(autostart=False) as client:
        parts = client.request_listing(ListProcesses(), Processes)
    return sorted({p.pid for part in parts for p in part.processes if p.state != "queued"})


def checkpoint_once(pid: int) -> str | None:
    """One checkpoint of ``pid``: None when it is saved, else why not."""
    try:
        with connect(autostart=False) as client:
            client.send(Checkpoint(pid=pid, action="checkpoint", origin="manual"))
            reply = client.receive(timeout=CHECKPOINT_TIMEOUT)
    except Failure as e:
        return e.message
    if isinstance(reply, Checkpointed) and not reply.failed:
        say(f"process {pid}: checkpoint {reply.number} written to {shown(reply.path)}")
        return None
    reason = reply.failed if isinstance(reply, Checkpointed) else getattr(reply, "error", "")
    return reason or "the agent did not answer"


def checkpoint(pid: int) -> bool:
    """A checkpoint of ``pid``, tried again a few times: a process that is moving
    between nodes at that moment (the balancer's doing) cannot be traced."""
    for attempt in range(ATTEMPTS):
        reason = checkpoint_once(pid)
        if reason is None:
            return True
        if attempt + 1 < ATTEMPTS:
            time.sleep(RETRY_DELAY * (attempt + 1))
    say(f"process {pid}: not checkpointed: {reason}")
    return False


def checkpoint_all() -> int:
    """Checkpoint every process of the job; how many were saved."""
    try:
        pids = job_pids()
    except Failure as e:
        say(f"cannot list the job's processes: {e.message}")
        return 0
    return sum(checkpoint(pid) for pid in pids)


def requeue(job: SlurmJob) -> bool:
    try:
        done = subprocess.run(
            ["scontrol", "requeue", str(job.job_id)],
            capture_output=True,
            text=True,
            timeout=REQUEUE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        say(f"scontrol requeue {job.job_id}: {e}")
        return False
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"status {done.returncode}"])[-1]
        say(f"scontrol requeue {job.job_id}: {said}")
        return False
    return True


def on_warning(job: SlurmJob) -> None:
    try:
        job.requeueing.touch(mode=0o600)
    except OSError as e:
        say(f"{job.requeueing}: {e.strerror}; not requeueing")
        return
    saved = checkpoint_all()
    say(f"job {job.job_id}: {saved} processes checkpointed; requeueing")
    if not requeue(job):
        job.requeueing.unlink(missing_ok=True)
