"""mosmon in a real 80x24 terminal (tmux) against a real 3-node test cluster.

tmux runs mosmon inside node 1; ``capture-pane -p`` is what a user would see.
Each node's row must appear with its values; a CPU-bound program started on node 2,
``mosctl block`` on node 2 and a guest moved to node 3 must show up within a few
refreshes; the view keys switch the bar's view, ``q`` quits with status 0 (a shell
around it writes its status on the terminal); the screen follows the terminal's size;
a terminal too small and no terminal at all are one line and status 125.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from support.clusters import migrate, node_programs, where
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

TIMEOUT = 60.0
SERIAL = itertools.count(1)
ROW = re.compile(
    r"\s*(?P<number>\d+) (?P<name>\S+)\s+(?P<state>\S+)\s+(?P<cpus>\d+)\s+(?P<speed>[\d.]+)"
    r"\s+(?P<load>[\d.]+)\s+(?P<free>\d+)\s+(?P<total>\d+)\s+(?P<guests>\d+) \[(?P<bar>[# ]*)\] "
    r"(?P<number_shown>\S+)"
)

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="mosmon's tests need tmux")


class Terminal:
    """A tmux server of its own with one session of the given size running ``argv``."""

    def __init__(self, cluster: LocalCluster, k: int, width: int, height: int) -> None:
        # a server of its own per terminal: one just killed may still hold its name
        self.socket = f"mosmon-test-{os.getpid()}-{next(SERIAL)}"
        self.target = "mon"
        # sh waits for mosmon and writes its status on the terminal (tmux 3.3a may miss
        # its own child's end and leave it a zombie); cat keeps the pane open after
        command = cluster.command(k, ["mosmon"])
        shell = ["sh", "-c", '"$@"; echo "mosmon ended: $?"; exec cat', "mosmon-test"]
        self.tmux(
            "-f", "/dev/null", "start-server", ";",
            # the size from the start: a pane made 80x24 and resized after could be
            # seen at its first size by a mosmon that starts quickly
            "set-option", "-g", "default-size", f"{width}x{height}", ";",
            "new-session", "-d", "-s", self.target, "-x", str(width), "-y", str(height),
            "--", *shell, *command,
            env=cluster.env(),
        )  # fmt: skip

    def tmux(self, *words: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *words],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", self.target).split("\n")

    def everything(self) -> list[str]:
        """The screen and the lines above it."""
        return self.tmux("capture-pane", "-p", "-S", "-", "-t", self.target).split("\n")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.target, *keys)

    def ended(self) -> int | None:
        """mosmon's exit status once it has ended (as its shell said on the terminal)."""
        for line in self.everything():
            match = re.fullmatch(r"mosmon ended: (\d+)", line.strip())
            if match:
                return int(match[1])
        return None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


def rows(lines: list[str]) -> dict[int, dict[str, str]]:
    found = {}
    for line in lines:
        match = ROW.match(line)
        if match:
            found[int(match["number"])] = match.groupdict()
    return found


def shows(term: Terminal, condition: object) -> bool:
    return bool(condition(rows(term.screen())))  # type: ignore[operator]


@pytest.fixture
def monitor(cluster3: LocalCluster) -> Iterator[Terminal]:
    term = Terminal(cluster3, 1, 80, 24)
    try:
        wait_until(lambda: len(rows(term.screen())) == 3, TIMEOUT, what="the three nodes' rows")
        yield term
    finally:
        term.close()


@pytest.fixture(scope="module")
def burn() -> Iterator[str]:
    with node_programs("mosmon", {"burn": ["-O0", "burn.c"]}) as directory:
        yield str(directory / "burn")


def test_every_node_has_its_row_with_its_values(cluster3: LocalCluster, monitor: Terminal) -> None:
    lines = monitor.screen()
    assert len(lines) >= 24 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("mosmon - load")
    assert lines[23].startswith("keys: l load  s speed  m memory  u utilisation  q quit")
    found = rows(lines)
    assert [found[k]["name"] for k in (1, 2, 3)] == ["node1", "node2", "node3"]
    for k in (1, 2, 3):
        assert found[k]["state"] == "up"
        assert int(found[k]["cpus"]) >= 1 and float(found[k]["speed"]) == 1.0
        assert 0 < int(found[k]["free"]) <= int(found[k]["total"])
        assert found[k]["guests"] == "0"
    assert monitor.ended() is None  # still running


def test_load_on_a_node_shows_within_a_few_refreshes(
    cluster3: LocalCluster, monitor: Terminal, burn: str
) -> None:
    wait_until(
        lambda: shows(monitor, lambda r: float(r[2]["load"]) < 0.5), TIMEOUT, what="node 2 idle"
    )
    busy = cluster3.popen(2, [burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(
            lambda: shows(monitor, lambda r: float(r[2]["load"]) >= 0.5 and "#" in r[2]["bar"]),
            TIMEOUT,
            what="node 2's load and its bar on the screen",
        )
        assert float(rows(monitor.screen())[3]["load"]) < 0.5  # the others stay idle
    finally:
        out, _ = busy.communicate("", timeout=TIMEOUT)
    assert out.startswith("burnt ")


def test_a_blocked_node_shows_blocked_until_noblock(
    cluster3: LocalCluster, monitor: Terminal
) -> None:
    def mosctl(verb: str) -> None:
        result = cluster3.run(2, ["mosctl", verb], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr

    mosctl("block")
    try:
        wait_until(
            lambda: shows(monitor, lambda r: r[2]["state"] == "blocked"), TIMEOUT, what="blocked"
        )
    finally:
        mosctl("noblock")
    wait_until(lambda: shows(monitor, lambda r: r[2]["state"] == "up"), TIMEOUT, what="up again")


def test_a_guest_shows_on_the_node_it_runs_on(
    cluster3: LocalCluster, monitor: Terminal, burn: str
) -> None:
    job = cluster3.popen(
        1,
        ["mosrun", "-L", burn],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: where(cluster3, job.pid) == "home", TIMEOUT, what="the job")
        assert migrate(cluster3, job.pid, "3").returncode == 0
        wait_until(
            lambda: shows(monitor, lambda r: r[3]["guests"] == "1" and r[1]["guests"] == "0"),
            TIMEOUT,
            what="node 3's guest on node 1's screen",
        )
    finally:
        out, err = job.communicate("", timeout=TIMEOUT)
    assert job.returncode == 0 and out.startswith("burnt "), err


def test_view_keys_switch_the_view_and_q_quits_with_status_0(
    cluster3: LocalCluster, monitor: Terminal
) -> None:
    for key, title, number in (
        ("m", "mosmon - memory", r"\d+M"),
        ("u", "mosmon - utilisation", r"\d+%"),
        ("s", "mosmon - speed", r"1\.00"),
        ("l", "mosmon - load", r"\d+\.\d\d"),
    ):
        monitor.keys(key)
        wait_until(lambda t=title: monitor.screen()[0].startswith(t), TIMEOUT, what=title)  # type: ignore[misc]
        found = rows(monitor.screen())
        assert all(re.fullmatch(number, found[k]["number_shown"]) for k in (1, 2, 3)), found
    monitor.keys("q")
    wait_until(lambda: monitor.ended() is not None, TIMEOUT, what="mosmon to end")
    assert monitor.ended() == 0


def test_a_terminal_that_is_resized_is_drawn_again(
    cluster3: LocalCluster, monitor: Terminal
) -> None:
    monitor.tmux("resize-window", "-t", monitor.target, "-x", "100", "-y", "30")
    wait_until(
        lambda: monitor.screen()[29].startswith("keys: "), TIMEOUT, what="the keys on line 30"
    )
    monitor.tmux("resize-window", "-t", monitor.target, "-x", "40", "-y", "10")
    wait_until(
        lambda: monitor.screen()[0].startswith("the terminal is 40x10; mosmon needs"),
        TIMEOUT,
        what="the too-small line",
    )
    monitor.tmux("resize-window", "-t", monitor.target, "-x", "80", "-y", "24")
    wait_until(lambda: len(rows(monitor.screen())) == 3, TIMEOUT, what="the rows again")
    assert monitor.ended() is None


def test_a_terminal_too_small_is_one_line_and_125(cluster3: LocalCluster) -> None:
    term = Terminal(cluster3, 1, 60, 24)
    try:
        wait_until(lambda: term.ended() is not None, TIMEOUT, what="mosmon to end")
        assert term.ended() == 125
        said = [line for line in term.everything() if line.strip()]
        assert said[0] == "mosmon: the terminal is 60x24; mosmon needs at least 72x5", said
        assert not any("Traceback" in line for line in said)
    finally:
        term.close()


def test_no_terminal_is_one_line_and_125(cluster3: LocalCluster) -> None:
    result = cluster3.run(1, ["mosmon"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 125
    assert result.stderr == "mosmon: needs a terminal (its stdin and stdout are not one)\n"
    assert result.stdout == ""


def test_more_nodes_than_lines_are_counted_and_every_line_fits() -> None:
    """The layout alone (no terminal): 30 nodes in 80x24, one never heard from."""
    from mosix.protocol import NodeFacts, NodeLoad
    from mosix.tools.monitor_view import VIEWS, rows_of, screen_lines

    def node(k: int) -> NodeLoad:
        return NodeLoad(k, f"10.0.0.{k}", f"n{k}", 0, k != 5, 2, 1.0, k / 10, 500, 1000, 0,
                        None if k == 5 else 0.1, ["block"] if k == 2 else [], k % 2)  # fmt: skip

    facts = NodeFacts(1, "n1", 2, 2000.0, [0.0, 0.0, 0.0], 1000, 500, 1, 0, 0, 0,
                      settings=["isolated"], guests=3)  # fmt: skip
    rows = rows_of([node(k) for k in range(1, 31)], facts)
    assert [r.state for r in rows[:5]] == ["isolated", "blocked", "up", "up", "down"]
    assert rows[0].guests == 3 and rows[2].guests == 1
    for view in VIEWS:
        lines = screen_lines(rows, view, 80, 24)
        assert len(lines) == 24 and all(len(line) < 80 for line in lines)
        assert lines[22] == "... 10 more nodes (a taller terminal shows them)"
        assert "[" not in lines[2 + 4]  # node 5, never heard from: no bar
