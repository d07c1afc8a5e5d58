"""The node agent's secret for admissions (``[site] mosrun_group``).

A program the site's wrapper started is registered through the agent's gate;
its descendants are found later in /proc (mosix.home_agent.registry), where a
claim is all a process shows.  So the agent answers an admitted registration
with an admission: a keyed hash of the user and the program's MOSIX_INHERIT
words, which mosrun puts in the program's environment (ADMISSION_ENV) for its
tree to inherit.  Discovery adopts a process only with an admission that
matches its own user and words: a tree the gate let in, or one just like it.

The key is 32 random bytes in the run directory, readable by the agent's user
alone, kept across the agent's restarts (processes outlive an agent); a file
that is not the agent's own, or not private, is replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32
KEY_NAME = "admission.key"


def load(run_dir: Path) -> bytes:
    """The agent's admission key (made on first use)."""
    path = run_dir / KEY_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return replace(path)
    try:
        st = os.fstat(fd)
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    private = stat.S_ISREG(st.st_mode) and not st.st_mode & 0o077
    if st.st_uid != os.geteuid() or not private or len(key) != KEY_BYTES:
        return replace(path)
    return key


def replace(path: Path) -> bytes:
    """A new key, written whole (a temporary file renamed over the old one)."""
    key = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_name(f".{KEY_NAME}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):  # left by an agent that had this pid
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if os.write(fd, key) != KEY_BYTES:
            raise OSError(f"{temporary}: short write")
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    os.replace(temporary, path)
    return key
