"""``mosix-slurm run CMD``: the job's cluster for the life of CMD.

In the batch script (``exec mosix-slurm run ./work.sh``): writes the job's
secret and agent configurations, starts one agent per allocated node as a
job step (``srun --overlap``, one task per node), waits until every one
listens, then runs CMD with ``MOSIX_RUN_DIR`` and ``MOSIX_CONFIG`` naming
this node's job agent, so its mosruns place, migrate and balance over exactly
the allocation.  On the warning signal (SIGUSR1 unless ``--signal`` says
otherwise: ``sbatch --signal=B:USR1@SECONDS``) it checkpoints the job's
processes and requeues the job (mosix.slurm.warning).  When CMD ends, or
Slurm ends the job, the agents' step is ended.  The exit status is CMD's
(its death signal too); mosix-slurm's own failures are 125, a command that
cannot run 126, one not found 127.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from mosix.agent_paths import RUN_DIR_ENV
from mosix.exits import EXIT_CANNOT_RUN, EXIT_NOT_FOUND, EXIT_USAGE, Failure
from mosix.slurm import agents, warning
from mosix.slurm.job import DIR_ENV, SlurmJob, current_job, prepare
from mosix.slurm.nodes import job_nodes

READY_TIMEOUT = 120.0  # every node's agent listens by then
AGENT_STEP_NAME = "mosix-agents"
STOP_TIMEOUT = 10.0  # then srun is killed (a lost node's task never answers)


def agent_step(job: SlurmJob) -> list[str]:
    n = str(job.node_count)
    return [
        "srun",
        "--overlap",
        "--quiet",
        f"--nodes={n}",
        f"--ntasks={n}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=0",
        "--no-kill",  # a lost node ends its agent, not the others
        f"--job-name={AGENT_STEP_NAME}",
        sys.executable,
        "-m",
        "mosix.slurm.cli",
        "agent",
    ]


def _unblocked() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def start_agents(job: SlurmJob) -> subprocess.Popen[bytes]:
    """The agents' step, once every node's agent has said it is ready."""
    try:
        step = subprocess.Popen(
            agent_step(job),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            preexec_fn=_unblocked,
        )
    except OSError as e:
        raise Failure(f"srun: {e.strerror}", EXIT_USAGE) from None
    assert step.stdout is not None
    ready, got = 0, b""
    deadline = time.monotonic() + READY_TIMEOUT
    while ready < job.node_count:
        left = deadline - time.monotonic()
        readable = select.select([step.stdout], [], [], max(left, 0))[0] if left > 0 else []
        chunk = os.read(step.stdout.fileno(), 4096) if readable else b""
        if not chunk:
            stop_agents(job, step)
            where = agents.run_dir(job) / "mosixd.log"
            raise Failure(
                f"{ready} of {job.node_count} nodes' agents got ready (see {where} on the others)",
                EXIT_USAGE,
            )
        got += chunk
        ready = got.count(b"ready\n")
    return step


def agent_step_id(job: SlurmJob) -> str | None:
    """The agents' step as ``JOB.STEP`` (squeue), or None if Slurm does not list it."""
    try:
        listed = subprocess.run(
            ["squeue", "--steps", "-h", "-j", str(job.job_id), "-o", "%i %j"],
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listed.stdout.splitlines():
        words = line.split()
        if len(words) == 2 and words[1] == AGENT_STEP_NAME:
            return words[0]
    return None


def stop_agents(job: SlurmJob, step: subprocess.Popen[bytes]) -> None:
    """End the agents' step: SIGTERM to each agent (an orderly stop) through
    ``scancel --signal``, so the step ends by itself; if it does not, srun is
    told to cancel it, then killed."""
    if step.poll() is None:
        step_id = agent_step_id(job)
        if step_id is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # a lost node's
                subprocess.run(  # slurmd never answers: then srun cancels the step
                    ["scancel", "--signal=TERM", step_id],
                    capture_output=True,
                    timeout=STOP_TIMEOUT,
                    check=False,
                )
        for ending in (None, signal.SIGTERM):
            if ending is not None:
                step.send_signal(ending)
            try:
                step.wait(STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            step.kill()
            step.wait()
    if step.stdout is not None:
        step.stdout.close()


def command_env(job: SlurmJob) -> dict[str, str]:
    env = dict(os.environ)
    env[RUN_DIR_ENV] = str(agents.run_dir(job))
    env["MOSIX_CONFIG"] = str(agents.config_path(job, agents.own_number(job)))
    env[DIR_ENV] = str(job.directory.parent)
    return env


def start_command(argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(list(argv), env=env, preexec_fn=_unblocked)
    except FileNotFoundError:
        raise Failure(f"{argv[0]}: command not found", EXIT_NOT_FOUND) from None
    except OSError as e:
        raise Failure(f"{argv[0]}: {e.strerror}", EXIT_CANNOT_RUN) from None


def pass_status(status: int) -> NoReturn:
    """Exit as the command did: its status, or its death signal."""
    if status < 0:
        sig = -status
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)  # a signal that does not end a process by default
    sys.exit(status)


def run(argv: Sequence[str], lost_after: float, warning_signal: int) -> NoReturn:
    job = current_job()
    env = command_env(job)  # this node must be one of the job's (not salloc's login shell)
    prepare(job)
    job.requeueing.unlink(missing_ok=True)  # this run is the requeued job, if it was one
    watched = {warning_signal, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    agents.write_configs(job, job_nodes(job), lost_after)
    step = start_agents(job)
    os.environ.update({k: env[k] for k in (RUN_DIR_ENV, "MOSIX_CONFIG", DIR_ENV)})
    try:
        command = start_command(argv, env)
    except Failure:
        stop_agents(job, step)
        raise
    warned = False
    while command.poll() is None:
        sig = signal.sigwait(watched)
        if sig == warning_signal and not warned:
            warned = True
            warning.on_warning(job)
        elif sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            command.send_signal(sig)
    stop_agents(job, step)
    pass_status(command.returncode)
