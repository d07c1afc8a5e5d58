"""mosmon's screen as plain lines: one row per node with a bar for the chosen view.

Pure layout (no curses, no agent): ``screen_lines`` turns what the agent said into
the lines of a terminal of a given size, so what mosmon shows is decided here and
drawn by mosix.tools.mosmon.  ASCII only: it must look the same over ssh and on a
plain terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mosix.display import shown
from mosix.protocol import NodeFacts, NodeLoad

MIN_COLUMNS = 72  # the fixed columns and a bar of 10 (the last column stays empty)
MIN_LINES = 5  # title, header, one node, the keys' line and one spare
BAR_MIN = 10


@dataclass(frozen=True)
class View:
    key: str
    name: str
    title: str


VIEWS = (
    View("l", "load", "load: runnable processes (bar: against the busiest node, at least 1)"),
    View("s", "speed", "speed: relative CPU speed of one CPU (bar: against the fastest)"),
    View("m", "memory", "memory: used of total (bar: used; number: free MB)"),
    View("u", "utilisation", "utilisation: load per CPU, in % (bar: up to 100%)"),
)
VIEW_KEYS = {v.key: v for v in VIEWS}
KEYS_LINE = "keys: " + "  ".join(f"{v.key} {v.name}" for v in VIEWS) + "  q quit"


@dataclass
class NodeRow:
    """One node as mosmon shows it."""

    number: int
    name: str
    state: str  # up, down, blocked, isolated, stay, lstay
    cpus: int
    speed: float
    load: float
    free_mb: int
    total_mb: int
    guests: int
    heard: bool = True  # False: never heard from (its numbers are unknown)
    settings: list[str] = field(default_factory=list)


def state_word(alive: bool, settings: Sequence[str]) -> str:
    """The most telling of a node's conditions: down, isolated, blocked, stay, lstay, up."""
    if "isolated" in settings:
        return "isolated"
    if not alive:
        return "down"
    for setting, word in (("block", "blocked"), ("stay", "stay"), ("lstay", "lstay")):
        if setting in settings:
            return word
    return "up"


def rows_of(nodes: Sequence[NodeLoad], facts: NodeFacts) -> list[NodeRow]:
    """The rows for the cluster's nodes (this node's settings and guests from its own
    status: other nodes cannot know it is isolated); without a cluster, this node."""
    if not nodes:
        return [
            NodeRow(
                number=facts.node,
                name=facts.name,
                state=state_word(True, facts.settings),
                cpus=facts.cpus,
                speed=facts.speed,
                load=facts.load[0] if facts.load else 0.0,
                free_mb=facts.mem_free_mb,
                total_mb=facts.mem_total_mb,
                guests=facts.guests,
                settings=list(facts.settings),
            )
        ]
    rows = []
    for n in nodes:
        mine = n.number == facts.node
        settings = list(facts.settings) if mine else list(n.settings)
        rows.append(
            NodeRow(
                number=n.number,
                name=n.name,
                state=state_word(n.alive or mine, settings),
                cpus=n.cpus,
                speed=n.speed,
                load=n.load,
                free_mb=n.free_mb,
                total_mb=n.total_mb,
                guests=facts.guests if mine else n.guests,
                heard=mine or n.age is not None,
                settings=settings,
            )
        )
    return rows


HEADER = f"{'NODE':>4} {'NAME':<8} {'STATE':<8} {'CPUS':>4} {'SPEED':>5} {'LOAD':>5} "
HEADER += f"{'FREE_MB':>7} {'TOTAL_MB':>8} {'GST':>3} "


def fixed_part(row: NodeRow) -> str:
    ident = f"{row.number:>4} {shown(row.name) or '-':<8.8} {row.state:<8}"
    if not row.heard:
        return f"{ident} {'-':>4} {'-':>5} {'-':>5} {'-':>7} {'-':>8} {'-':>3} "
    return (
        f"{ident} {row.cpus:>4} {row.speed:>5.2f} {row.load:>5.2f} "
        f"{row.free_mb:>7} {row.total_mb:>8} {row.guests:>3} "
    )


def measure(view: View, row: NodeRow, rows: Sequence[NodeRow]) -> tuple[float, str]:
    """The bar's fill (0..1) and the number written after it."""
    if view.name == "load":
        top = max([1.0, *(r.load for r in rows if r.heard)])
        return row.load / top, f"{row.load:.2f}"
    if view.name == "speed":
        top = max([1.0, *(r.speed for r in rows if r.heard)])
        return row.speed / top, f"{row.speed:.2f}"
    if view.name == "memory":
        used = max(row.total_mb - row.free_mb, 0)
        return (used / row.total_mb if row.total_mb else 0.0), f"{row.free_mb}M"
    per_cpu = row.load / row.cpus if row.cpus else 0.0
    return min(per_cpu, 1.0), f"{per_cpu * 100:.0f}%"


def bar(fill: float, number: str, width: int) -> str:
    """``[#####     ] number`` in exactly ``width`` characters."""
    inside = max(width - len(number) - 3, 1)
    hashes = round(max(0.0, min(fill, 1.0)) * inside)
    return f"[{'#' * hashes}{' ' * (inside - hashes)}] {number}"[:width]


def fits(columns: int, lines: int) -> bool:
    return columns >= MIN_COLUMNS and lines >= MIN_LINES


def too_small(columns: int, lines: int) -> str:
    return f"the terminal is {columns}x{lines}; mosmon needs at least {MIN_COLUMNS}x{MIN_LINES}"


def screen_lines(
    rows: Sequence[NodeRow], view: View, columns: int, lines: int, note: str = ""
) -> list[str]:
    """The lines of the screen (each shorter than ``columns``: the last cell of a
    curses window cannot be written), at most ``lines`` of them."""
    width = columns - 1
    if not fits(columns, lines):
        return [too_small(columns, lines)[:width]]
    bar_width = max(width - len(HEADER), BAR_MIN)
    out = [f"mosmon - {view.title}"[:width], (HEADER + view.name.upper())[:width]]
    room = lines - 3  # the title, the header and the keys' line
    shown_rows = rows if len(rows) <= room else rows[: room - 1]
    for row in shown_rows:
        text = fixed_part(row)
        if row.heard and row.state != "down":
            fill, number = measure(view, row, rows)
            text += bar(fill, number, bar_width)
        out.append(text[:width])
    if len(shown_rows) < len(rows):
        out.append(f"... {len(rows) - len(shown_rows)} more nodes (a taller terminal shows them)")
    out += [""] * (lines - 1 - len(out))
    out.append((note or KEYS_LINE)[:width])
    return out
