"""A watchdog for the agent's loop: a trio task beats every half second; a thread
of its own notices when the beats stop (a synchronous call or a long computation
in the loop's thread holds every client, peer and process of this node) and
writes where the loop's thread is, to the log, while it stays stuck.

One line per stall is what an administrator needs: how long, and the innermost
frames of the loop's thread.  It costs one thread waking once a second."""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback

import trio

log = logging.getLogger("mosixd")

BEAT = 0.5  # seconds between the loop's beats
STUCK = 3.0  # a loop silent this long is reported, and again every STUCK while it stays so
FRAMES = 12  # innermost frames of the loop's thread written


class LoopWatchdog:
    def __init__(self) -> None:
        self.last_beat = time.monotonic()
        self.loop_thread = threading.get_ident()
        self.stop = threading.Event()

    async def beat(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The loop's side (a trio task), and the watching thread started and ended
        with it."""
        self.loop_thread = threading.get_ident()
        watcher = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        watcher.start()
        task_status.started()
        try:
            while True:
                self.last_beat = time.monotonic()
                await trio.sleep(BEAT)
        finally:
            self.stop.set()

    def _watch(self) -> None:
        reported = 0.0  # the silence already reported (0: none)
        while not self.stop.wait(1.0):
            silent = time.monotonic() - self.last_beat
            if silent < STUCK:
                if reported:
                    log.warning(
                        "agent loop: turning again after a stall of %.1f s or more", reported
                    )
                reported = 0.0
                continue
            if silent - reported < STUCK:
                continue
            reported = silent
            frame = sys._current_frames().get(self.loop_thread)
            where = traceback.format_stack(frame)[-FRAMES:] if frame else ["(no frame)"]
            log.warning(
                "agent loop: no turn for %.1f s; its thread is at:\n%s",
                silent,
                "".join(where).rstrip(),
            )
