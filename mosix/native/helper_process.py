"""Ending a C helper started with ``trio.lowlevel.open_process``.

trio's ``Process.aclose`` (close the pipes, wait, kill if cancelled) was
deprecated and then removed (trio 0.35); every helper the agent runs
(mosix-ckpt, mosix-remote) ends through :func:`close_process` instead.
"""

from __future__ import annotations

import contextlib

import trio


async def close_process(proc: trio.Process) -> None:
    """Close our ends of ``proc``'s pipes and reap it.

    If we are cancelled while it still runs, it is killed and reaped before
    the cancellation goes on, so no helper outlives the task that started it.
    """
    with trio.CancelScope(shield=True):
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                await pipe.aclose()
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
