"""``mosix-slurm mosrun NAME [-o FILE] [MOSRUN ARGS...]``: a program of the job, by name.

The first time, it runs ``mosrun -C{job dir}/checkpoints/NAME MOSRUN ARGS``
(stdout truncated into FILE with ``-o``), so its checkpoints (the warning's,
``-A``'s, ``migrate``'s) form one series.  When the job runs again after a
requeue, it resumes the newest good checkpoint of that series with ``mosrun
-R`` instead: the program's files are reopened at the offsets they had, so
its output continues where the checkpoint left it, no line lost or repeated.
A program that ended (and not because the job was being requeued) is
recorded in ``finished/NAME`` with its status and is not run again.  The
exit status is the program's (or its death signal).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from mosix.ckpt.image import ImageError, read_head_from
from mosix.exits import EXIT_CANNOT_RUN, EXIT_NOT_FOUND, EXIT_USAGE, Failure
from mosix.slurm.job import SlurmJob, current_job, prepare
from mosix.slurm.session import pass_status

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise Failure(
            f"{name!r}: a program's name is up to 100 letters, digits, '.', '_' or '-' "
            "(not starting with '.' or '-')",
            EXIT_USAGE,
        )


def newest_checkpoint(job: SlurmJob, name: str) -> Path | None:
    """The highest-numbered checkpoint of NAME's series that is a good image."""
    numbered: list[tuple[int, Path]] = []
    prefix = f"{name}."
    try:
        entries = list(os.scandir(job.checkpoints))
    except OSError:
        return None
    for entry in entries:
        rest = entry.name.removeprefix(prefix)
        numbered_name = entry.name.startswith(prefix) and rest.isdigit()
        if numbered_name and entry.is_file(follow_symlinks=False):
            numbered.append((int(rest), Path(entry.path)))
    for _, path in sorted(numbered, reverse=True):
        try:
            read_head_from(str(path))
        except (ImageError, OSError):
            continue  # a failed checkpoint holds its reason, not an image
        return path
    return None


def finished_status(job: SlurmJob, name: str) -> int | None:
    try:
        text = (job.finished / name).read_text().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def record_finished(job: SlurmJob, name: str, status: int) -> None:
    """NAME ended by itself (not by the requeue): it is not run again."""
    if job.requeueing.exists():
        return
    path = job.finished / name
    temporary = path.with_name(f".{name}.{os.getpid()}")
    try:
        temporary.write_text(f"{status}\n")
        os.replace(temporary, path)
    except OSError as e:  # it will run again after a requeue: say so, pass its status on
        temporary.unlink(missing_ok=True)
        sys.stderr.write(f"mosix-slurm: {name}: cannot record its end: {path}: {e.strerror}\n")


def mosrun_argv(job: SlurmJob, name: str, args: list[str]) -> tuple[list[str], Path | None]:
    """The mosrun command line, and the checkpoint it resumes (None: a fresh start)."""
    found = newest_checkpoint(job, name)
    if found is not None:
        return ["mosrun", f"-R{found}"], found
    return ["mosrun", f"-C{job.checkpoints / name}", *args], None


def run(name: str, output: str | None, args: list[str]) -> NoReturn:
    check_name(name)
    job = current_job()
    prepare(job)
    earlier = finished_status(job, name)
    if earlier is not None:
        sys.stderr.write(f"mosix-slurm: {name}: finished in an earlier run of the job\n")
        pass_status(earlier)
    argv, resumed = mosrun_argv(job, name, args)
    if resumed is not None:
        sys.stderr.write(f"mosix-slurm: {name}: resumes from {resumed}\n")
        sys.stderr.flush()
    stdout: int | None = None
    if resumed is None and output is not None:
        try:
            stdout = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as e:
            raise Failure(f"-o {output}: {e.strerror}", EXIT_USAGE) from None
    try:
        child = subprocess.Popen(argv, stdout=stdout)
    except FileNotFoundError:
        raise Failure("mosrun: command not found", EXIT_NOT_FOUND) from None
    except OSError as e:
        raise Failure(f"mosrun: {e.strerror}", EXIT_CANNOT_RUN) from None
    finally:
        if stdout is not None:
            os.close(stdout)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the program's to act on
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    status = child.wait()
    record_finished(job, name, status)
    pass_status(status)
