"""Stream the lines of a -S commands-file without holding the file in memory.

Lines are bytes: bash takes its command line as bytes, so a line in any
encoding (or none) runs as written.  What cannot run is refused with the line
number: a NUL byte (an argument cannot hold one; the file is most likely
binary) and a line longer than the kernel accepts as one argument.  Blank
lines (nothing but spaces and tabs) are not commands and are skipped, but
still counted, so line numbers in messages match an editor's.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 64 * 1024
# MAX_ARG_STRLEN: one argv string, its terminating NUL included, is at most
# 32 pages of 4 KiB on Linux; 'bash -c LINE' passes LINE as one argument.
LINE_MAX = 32 * 4096 - 1
BLANK = b" \t\r"


@dataclass(frozen=True)
class CommandLine:
    number: int  # 1-based line number in the file
    text: bytes  # the line as written, without its newline


class MalformedInput(Exception):
    """The file cannot be read on from this point; the message names the line."""


def command_lines(fd: int, name: str) -> Iterator[CommandLine]:
    """The non-blank lines of the open file ``fd`` in order, read in chunks.

    Raises :class:`MalformedInput` at the first line that cannot run (or on
    a read error); every line before it has been yielded.
    """
    number = 0
    pending = b""  # start of a line whose newline has not been read yet
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except OSError as e:
            if e.errno == errno.EISDIR:
                raise MalformedInput(f"{name}: is a directory") from None
            raise MalformedInput(f"{name}: cannot read line {number + 1}: {e.strerror}") from None
        if not chunk:
            break
        data = pending + chunk if pending else chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            number += 1
            line = data[start:end]
            start = end + 1
            if line.strip(BLANK):
                yield checked(name, number, line)
        pending = data[start:]
        if len(pending) > LINE_MAX:
            raise MalformedInput(too_long(name, number + 1))
    if pending:
        number += 1
        if pending.strip(BLANK):
            yield checked(name, number, pending)


def too_long(name: str, number: int) -> str:
    return f"{name}: line {number} is longer than {LINE_MAX} bytes (the limit of one argument)"


def checked(name: str, number: int, line: bytes) -> CommandLine:
    if b"\0" in line:
        raise MalformedInput(f"{name}: line {number} contains a NUL byte (is it a binary file?)")
    if len(line) > LINE_MAX:
        raise MalformedInput(too_long(name, number))
    return CommandLine(number, line)
