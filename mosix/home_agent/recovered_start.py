"""A recovered process (``mosrun -R``) with a placement: when it may be moved.

A recovered process has no start gate (its shim started long ago, in the
process that was checkpointed): mosrun becomes the restorer, which rebuilds
the program and jumps to a trampoline that unmaps the restorer and returns
into the program (csrc/restore/restore_state.c).  The agent moves it once
that has happened: the trampoline's pages are there and the restorer's are
gone.  Between the trampoline's munmap and its rt_sigreturn there are two
instructions; one more poll after the restorer has gone covers them.
"""

from __future__ import annotations

import trio

from mosix.ckpt import format as fmt
from mosix.sysinfo import proc_info

POLL_SECONDS = 0.005
_RESTORER = f"{fmt.RESTORER_BASE:x}-"
_TRAMPOLINE = f"{fmt.TRAMPOLINE:x}-"


def resumed(pid: int) -> bool:
    """Whether the restorer of process ``pid`` has handed over to the program."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            starts = {line.split(" ", 1)[0].split("-", 1)[0] + "-" for line in f}
    except OSError:
        return False
    return _TRAMPOLINE in starts and _RESTORER not in starts


async def wait_resumed(pid: int) -> bool:
    """Wait until the recovered process ``pid`` runs its own code (False: it ended first)."""
    while proc_info.exists(pid):
        if resumed(pid):
            await trio.sleep(POLL_SECONDS)  # past the trampoline's last instructions
            return proc_info.exists(pid)
        await trio.sleep(POLL_SECONDS)
    return False
