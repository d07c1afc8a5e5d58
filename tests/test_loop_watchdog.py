"""The agent's loop watchdog: a loop held by a synchronous call is logged with the
frames of that call, and its end is logged too (a real trio loop and thread)."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from mosix.node.loop_watchdog import STUCK, LoopWatchdog


def hold_the_loop_synchronously(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking /proc read or a long computation does


def test_a_held_loop_is_logged_with_where_it_is(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(LoopWatchdog().beat)
            hold_the_loop_synchronously(STUCK + 1.5)
            await trio.sleep(1.5)  # turns again: the watchdog says so at its next look
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="mosixd"):
        trio.run(main)
    stuck = [r.getMessage() for r in caplog.records if "no turn for" in r.getMessage()]
    assert len(stuck) == 1, caplog.text
    assert "hold_the_loop_synchronously" in stuck[0] and "time.sleep" in stuck[0]
    assert "turning again" in caplog.text


def test_a_loop_that_turns_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(LoopWatchdog().beat)
            await trio.sleep(STUCK + 1.5)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="mosixd"):
        trio.run(main)
    assert "agent loop" not in caplog.text
