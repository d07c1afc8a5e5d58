"""Waiting for state held by another process, where it offers no event to wait on."""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_TIMEOUT = 30.0


def wait_until(
    condition: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "",
    period: float = 0.2,
) -> None:
    """Poll ``condition`` until it is true, first every 10 ms, slowing to every ``period``
    seconds (a costly check, e.g. a tool run inside a node, asks for a longer period);
    after ``timeout`` seconds the test fails, naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    delay = min(0.01, period)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, period)
