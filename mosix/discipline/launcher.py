"""Become the C launcher, ``mosix-exec``, which puts the program under the discipline.

mosrun execs the launcher in place and the launcher execs the program in
place, so the pid is the program's throughout.  The launcher searches PATH
(execvp's rules) and reports its own failures with env(1)'s statuses: 125
(mosrun failed), 126 (found but not runnable), 127 (not found).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from mosix.exits import EXIT_USAGE, Failure
from mosix.native import native_path
from mosix.native_names import Program

if TYPE_CHECKING:
    import subprocess

LAUNCHER = Program.LAUNCHER
SHIM = Program.SHIM
NO_DISCIPLINE = "n"  # the launcher's mode for `native`

# mosenv: variables the dynamic loader removes from a set-id program's
# environment (glibc's unsecure list, plus LD_* and MALLOC_* wholesale).  They
# are saved under other names and the launcher puts them back just before it
# executes the program.
SAVED_LIST = "MOSIX_SAVED_ENV"
SAVED_PREFIX = "MOSIX_SAVED_"
SECURE_MODE_STRIPS = frozenset(
    [
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TMPDIR",
        "TZDIR",
    ]
)


def stripped_in_secure_mode(name: str) -> bool:
    return name in SECURE_MODE_STRIPS or name.startswith(("LD_", "MALLOC_"))


def saved_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that carry ``env``'s secure-mode casualties past a set-id launcher."""
    names = sorted(n for n in env if stripped_in_secure_mode(n) and " " not in n)
    if not names:
        return {}
    saved = {f"{SAVED_PREFIX}{n}": env[n] for n in names}
    saved[SAVED_LIST] = " ".join(names)
    return saved


def exec_launcher(
    mode: str,
    prog: str,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    private_dirs: Sequence[str] = (),
    private_files: int | None = None,
    private_mb: int = 0,
) -> NoReturn:
    """Become ``mosix-exec`` running ``name`` with ``argv`` under ``mode`` (u, e, w or n),
    with ``private_dirs`` private (mosrun -X: one tmpfs of ``private_mb`` MiB for all,
    0: the default), filled from the descriptor ``private_files``
    (:func:`private_files_stream`) when given."""
    launcher = native_path(LAUNCHER)
    words = [launcher, "-m", mode, "-p", prog]
    if mode != NO_DISCIPLINE:
        words += ["-s", native_path(SHIM)]
    for directory in private_dirs:
        words += ["-X", directory]
    if private_files is not None:
        words += ["-P", str(private_files)]
    if private_dirs and private_mb > 0:
        words += ["-L", str(private_mb)]
    words += ["--", name, *argv]
    try:
        os.execve(launcher, words, dict(env))
    except OSError as e:
        raise Failure(f"{launcher}: {e.strerror}", EXIT_USAGE) from None


# One file for mosix-exec -P: the index of its -X directory, the name's length,
# st_mode and the size, then the name and the contents (csrc/exec/private_dirs.c).
PRIVATE_FILE_HEAD = struct.Struct("=HHIQ")


def private_files_stream(files: Iterable[tuple[int, bytes, int, bytes]]) -> int:
    """A descriptor (a memory file, at offset 0) holding ``files`` (directory index,
    name, mode, contents) for mosix-exec -P."""
    fd = os.memfd_create("mosix-private-files", 0)
    with os.fdopen(os.dup(fd), "wb") as out:
        for directory, name, mode, data in files:
            out.write(PRIVATE_FILE_HEAD.pack(directory, len(name), mode, len(data)))
            out.write(name)
            out.write(data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass(frozen=True)
class Caller:
    """What a program ``native`` starts takes from its caller, read by the agent from
    the kernel: the caller's directory (a descriptor), umask, limits, ids and groups."""

    directory: int  # a descriptor of the caller's directory (O_PATH)
    umask: int
    limits: tuple[tuple[int, int, int], ...]  # (resource, soft, hard); RLIM_INFINITY as 2**64-1
    uid: int
    gid: int
    groups: tuple[int, ...]


def spawn_native(
    argv: Sequence[bytes], env: Mapping[bytes, bytes], std: Sequence[int], caller: Caller
) -> subprocess.Popen[bytes]:
    """The node agent starts ``argv`` outside the discipline as the caller: ``mosix-exec``
    in mode n, which enters the caller's directory and sets its umask and limits as
    the caller, then executes the program (126/127 and their line are its own)."""
    import subprocess  # the agent's: mosrun, which execs the launcher, starts without it

    launcher = native_path(LAUNCHER)
    words: list[str | bytes] = [launcher, "-m", NO_DISCIPLINE, "-p", "native"]
    words += ["-c", str(caller.directory), "-k", f"{caller.umask:o}"]
    for resource, soft, hard in caller.limits:
        words += ["-l", f"{resource}:{soft}:{hard}"]
    words += ["--", argv[0], *argv]
    return subprocess.Popen(
        words,
        stdin=std[0],
        stdout=std[1],
        stderr=std[2],
        pass_fds=(caller.directory,),
        cwd="/",
        env=dict(env),
        user=caller.uid,
        group=caller.gid,
        extra_groups=list(caller.groups),
        restore_signals=True,
        close_fds=True,
    )


def batch_words(words: Sequence[bytes], cwd: bytes, umask: int) -> list[str | bytes]:
    """The command that starts a batch job (mosrun -E/-M) on its node: ``mosix-exec``
    in mode n, started as the user, enters ``cwd`` as the user (``-d``), sets the
    umask and executes ``words``: the program's name (searched in PATH), then its
    argument vector (126/127 and their line are the launcher's own)."""
    launcher = native_path(LAUNCHER)
    head: list[str | bytes] = [launcher, "-m", NO_DISCIPLINE, "-p", "mosrun", "-d", cwd]
    return [*head, "-k", f"{umask:o}", "--", *words]
