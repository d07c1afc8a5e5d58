"""Checkpoint file names, as the manual gives them (mosrun(1), CHECKPOINTS).

``-Cmysave`` gives mysave.1, mysave.2, ...; a name that already has a numeric
extension starts there (``-Csave.4``: save.4, save.5, ...); without -C the
files are ckpt.{pid}.1, ckpt.{pid}.2, ...  ``-N{max}`` recycles the versions
(``-Csave.4 -N3``: save.4, save.5, save.6, save.4, ...); -N0 is unlimited.
Checkpoints that failed (open pipes or sockets) are counted like the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBERED = re.compile(r"(?s)(.*[^/])\.([0-9]+)")


@dataclass(frozen=True)
class Series:
    base: str  # the name without the numeric extension
    first: int  # the first number
    limit: int  # versions before recycling (0: unlimited)

    def number(self, taken: int) -> int:
        """The number of the checkpoint after ``taken`` earlier ones."""
        return self.first + (taken % self.limit if self.limit else taken)

    def name(self, taken: int) -> str:
        return f"{self.base}.{self.number(taken)}"


def series(file: str, pid: int, limit: int = 0) -> Series:
    """The series for ``-C{file}`` ("" when -C was not given) of process ``pid``."""
    if not file:
        return Series(f"ckpt.{pid}", 1, limit)
    m = _NUMBERED.fullmatch(file)
    if m and not m.group(1).endswith("/"):
        return Series(m.group(1), int(m.group(2)), limit)
    return Series(file, 1, limit)
