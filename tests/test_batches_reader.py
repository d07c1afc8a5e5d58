"""The -S commands-file reader: streaming, line numbers, refusals."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosix.mosrun.batches.reader import CHUNK, LINE_MAX, CommandLine, MalformedInput, command_lines


def read_all(path: Path) -> Iterator[CommandLine]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield from command_lines(fd, path.name)
    finally:
        os.close(fd)


def lines_of(tmp_path: Path, data: bytes) -> list[tuple[int, bytes]]:
    path = tmp_path / "cmds"
    path.write_bytes(data)
    return [(c.number, c.text) for c in read_all(path)]


def test_lines_in_order_with_numbers_and_blank_lines_skipped(tmp_path: Path) -> None:
    data = b"echo a\n\n   \n\t\necho b\n  echo c  \n"
    assert lines_of(tmp_path, data) == [(1, b"echo a"), (5, b"echo b"), (6, b"  echo c  ")]


def test_last_line_without_newline_is_a_command(tmp_path: Path) -> None:
    assert lines_of(tmp_path, b"a\nb") == [(1, b"a"), (2, b"b")]


def test_empty_file_has_no_commands(tmp_path: Path) -> None:
    assert lines_of(tmp_path, b"") == []


def test_bytes_in_any_encoding_pass_as_written(tmp_path: Path) -> None:
    assert lines_of(tmp_path, b"echo \xe9t\xe9\n") == [(1, b"echo \xe9t\xe9")]


def test_lines_across_chunk_boundaries_are_whole(tmp_path: Path) -> None:
    line = b"x" * 1000
    count = 3 * CHUNK // len(line)
    got = lines_of(tmp_path, (line + b"\n") * count)
    assert got == [(i + 1, line) for i in range(count)]


def test_nul_byte_refused_naming_the_line_after_yielding_the_lines_before(tmp_path: Path) -> None:
    path = tmp_path / "cmds"
    path.write_bytes(b"one\ntwo\nth\0ree\nfour\n")
    seen = []
    with pytest.raises(MalformedInput, match=r"cmds: line 3 contains a NUL byte"):
        for c in read_all(path):
            seen.append(c.text)
    assert seen == [b"one", b"two"]


@pytest.mark.parametrize("newline", [b"\n", b""])
def test_too_long_line_refused_naming_the_line(tmp_path: Path, newline: bytes) -> None:
    path = tmp_path / "cmds"
    path.write_bytes(b"ok\n" + b"y" * (LINE_MAX + 1) + newline + b"after\n")
    with pytest.raises(MalformedInput, match=r"line 2 is longer than"):
        list(read_all(path))


def test_longest_line_accepted(tmp_path: Path) -> None:
    assert lines_of(tmp_path, b"z" * LINE_MAX + b"\n") == [(1, b"z" * LINE_MAX)]


def test_directory_refused(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(MalformedInput, match="is a directory"):
            list(command_lines(fd, "d"))
    finally:
        os.close(fd)
