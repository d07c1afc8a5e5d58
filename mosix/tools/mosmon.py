"""mosmon: a live view of every node of the cluster, refreshed each second.

Each refresh asks this node's agent for the cluster's load vectors (as ``mosctl
rstatus``) and this node's status (as ``mosctl status``: its own settings, such as
isolated, which no other node can report); mosix.tools.monitor_view lays them out
and this module draws them with curses and reads the keys.
"""

from __future__ import annotations

import contextlib
import curses
import os
import sys
import time
from typing import Annotated

import typer

from mosix.exits import Failure
from mosix.protocol import GetStatus, ListNodes, Nodes, Status
from mosix.tools.common import app, fail, run
from mosix.tools.monitor_view import (
    VIEW_KEYS,
    VIEWS,
    NodeRow,
    View,
    fits,
    rows_of,
    screen_lines,
    too_small,
)

TOOL = "mosmon"
QUIT_KEYS = frozenset({ord("q"), ord("Q")})

cli = app(
    TOOL,
    "Show every node of the cluster live: load, speed, CPUs, free and total memory, "
    "guests and state (up, down, blocked, isolated, stay), with a bar per node for the "
    "chosen view, refreshed every second. Keys: l load, s speed, m memory, "
    "u utilisation (load per CPU), q quit. It needs a terminal of at least 72x5.",
)


def snapshot() -> list[NodeRow]:
    """The nodes now, from this node's agent (started if none runs, as mosctl does);
    a failure is a Failure with one line."""
    from mosix.agent_client import connect

    with connect(autostart=True) as client:
        nodes = client.request(ListNodes(), Nodes).nodes
    with connect(autostart=True) as client:
        facts = client.request(GetStatus(), Status).facts
    if facts is None:
        raise Failure("the agent sent no status for this node")
    return rows_of(nodes, facts)


def draw(screen: curses.window, lines: list[str]) -> None:
    screen.erase()
    for y, line in enumerate(lines):
        screen.addstr(y, 0, line)
    screen.refresh()


class Monitor:
    """The running view: the last rows, the view chosen, when to ask again."""

    def __init__(self, screen: curses.window, rows: list[NodeRow], interval: float) -> None:
        self.screen = screen
        self.rows = rows
        self.interval = interval
        self.view: View = VIEWS[0]
        self.note = ""
        self.next_refresh = time.monotonic() + interval

    def show(self) -> None:
        lines, columns = self.screen.getmaxyx()
        draw(self.screen, screen_lines(self.rows, self.view, columns, lines, self.note))

    def refresh_data(self) -> None:
        try:
            self.rows = snapshot()
            self.note = ""
        except Failure as e:  # the last rows stay; asked again next time
            self.note = f"{TOOL}: {e.message} (trying again)"
        self.next_refresh = time.monotonic() + self.interval

    def run(self) -> None:
        while True:
            self.show()
            wait_ms = max(int((self.next_refresh - time.monotonic()) * 1000), 0)
            self.screen.timeout(wait_ms)
            key = self.screen.getch()
            if key in QUIT_KEYS:
                return
            if key == -1 or time.monotonic() >= self.next_refresh:
                self.refresh_data()
            if 0 <= key < 256 and chr(key).lower() in VIEW_KEYS:
                self.view = VIEW_KEYS[chr(key).lower()]
            # KEY_RESIZE: curses knows the new size already; the next show() uses it


def in_curses(screen: curses.window, rows: list[NodeRow], interval: float) -> None:
    with contextlib.suppress(curses.error):  # a terminal that cannot hide its cursor
        curses.curs_set(0)
    Monitor(screen, rows, interval).run()


@cli.command()
def main_command(
    interval: Annotated[
        float,
        typer.Option("-i", "--interval", min=0.1, max=3600.0, help="seconds between refreshes"),
    ] = 1.0,
) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail(TOOL, "needs a terminal (its stdin and stdout are not one)")
    columns, lines = os.get_terminal_size(sys.stdout.fileno())
    if not fits(columns, lines):
        fail(TOOL, too_small(columns, lines))
    try:
        rows = snapshot()
    except Failure as e:
        fail(TOOL, e.message, e.status)
    try:
        curses.wrapper(in_curses, rows, interval)
    except curses.error as e:
        fail(TOOL, f"cannot use the terminal (TERM={os.environ.get('TERM', '')}): {e}")
    except KeyboardInterrupt:  # Ctrl-C ends it as q does
        pass


def main() -> None:
    run(cli, TOOL)
