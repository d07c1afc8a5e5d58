"""What the agent is doing, on request: SIGUSR1 writes every trio task and where it
waits (each coroutine's file, line and function) to the agent's log.

For an administrator whose agent does not answer: ``kill -USR1 $(cat
/run/mosix/mosixd.pid)`` and read the log.  A thread blocked outside trio (a
synchronous call in the loop's thread) shows as no dump at all: then the
loop's thread itself is stuck, which ``/proc/PID/task/PID/stack`` tells."""

from __future__ import annotations

import logging
import signal
import types
from collections.abc import Iterator

import trio

log = logging.getLogger("mosixd")


def _await_chain(coro: object) -> Iterator[str]:
    """Each frame a coroutine is suspended in, outermost first."""
    seen = 0
    while coro is not None and seen < 64:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if isinstance(frame, types.FrameType):
            code = frame.f_code
            yield f"{code.co_filename}:{frame.f_lineno} {code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def _task_lines(task: trio.lowlevel.Task, depth: int) -> Iterator[str]:
    pad = "  " * depth
    yield f"{pad}task {task.name}"
    for where in _await_chain(task.coro):
        yield f"{pad}  at {where}"
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            yield from _task_lines(child, depth + 1)


def task_tree() -> list[str]:
    """Every task of the running trio loop, children indented under parents."""
    return list(_task_lines(trio.lowlevel.current_root_task(), 0))


async def dump_tasks_on_signal(
    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        task_status.started()
        async for _ in signals:
            lines = task_tree()
            tasks = sum(1 for line in lines if line.lstrip().startswith("task "))
            log.info("tasks (%d):\n%s", tasks, "\n".join(lines))
