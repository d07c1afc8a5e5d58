"""Building the tests' C programs, the one way every module does it.

Without gcc (or, for ``static=True``, without static libc) the test fails with a
clear message: CI (.ci/run) installs both, so a missing compiler there is a broken
setup, not a reason to pass quietly.  On a machine without them, set
MOSIX_TESTS_WITHOUT_CC=1 to skip those tests instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

ALLOW_MISSING_ENV = "MOSIX_TESTS_WITHOUT_CC"
BUILD_TIMEOUT = 120.0


def _missing(what: str) -> None:
    message = f"{what} (or set {ALLOW_MISSING_ENV}=1 to skip the tests that need it)"
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def build_c(
    source: Path | str | Sequence[Path], exe: Path, *flags: str, static: bool = False
) -> Path:
    """Compile ``source`` (a .c file, several, or C text as a str, written next to ``exe``)
    into ``exe`` with gcc and ``flags``; returns ``exe``.  A program that does not build
    fails the test, with gcc's messages."""
    if shutil.which("gcc") is None:
        _missing("gcc is needed to build the test programs (Debian: apt-get install gcc)")
    if isinstance(source, str):
        written = exe.with_name(exe.name + ".c")
        written.write_text(source)
        sources: list[Path] = [written]
    elif isinstance(source, Path):
        sources = [source]
    else:
        sources = list(source)
    cmd = ["gcc", *flags, *(["-static"] if static else []), "-o", str(exe), *map(str, sources)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if result.returncode != 0:
        if static and "cannot find -lc" in result.stderr:
            _missing("gcc -static needs static libc (Debian: apt-get install libc6-dev)")
        pytest.fail(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}", pytrace=False)
    return exe
