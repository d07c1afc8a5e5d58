"""Long listings (processes, queued jobs) cut into frames that fit MAX_FRAME.

Records are packed in order, at most LISTING_CHUNK to a frame and never more
bytes than a frame may carry; commands are already cut to COMMAND_KEPT when
the agent takes them in, so every record fits a frame by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from mosix.protocol import LISTING_CHUNK, MAX_FRAME, Message, record_size

R = TypeVar("R")
FRAME_OVERHEAD = 256  # the message around the records: op, field names, counts


class Chunks(NamedTuple):
    """A listing still to be built: its records, built while the frames go out (so
    the client decodes the first frames while the agent builds the later ones),
    and the message around each part (``more`` on all but the last)."""

    records: Iterable[Any]
    frame: Callable[[list[Any], bool], Message]


def parts(records: Iterable[R], budget: int = MAX_FRAME - FRAME_OVERHEAD) -> Iterator[list[R]]:
    """``records`` in consecutive parts that each fit one frame; one empty part if none."""
    part: list[R] = []
    used = 0
    for record in records:
        size = record_size(record)
        if part and (len(part) >= LISTING_CHUNK or used + size > budget):
            yield part
            part, used = [], 0
        part.append(record)
        used += size
    yield part
