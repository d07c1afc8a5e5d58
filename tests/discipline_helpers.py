"""Helpers for the discipline tests: the installed mosrun and the C probe programs.

The tests run real programs under real filters through the *installed*
package (``pip install .``): ``mosrun`` from PATH, and the compiled parts
found through the interpreter that ``mosrun`` runs on, never the checkout's
``mosix/_native``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cbuild import build_c

REPO = Path(__file__).resolve().parents[1]
PROBE_SOURCE = REPO / "tests" / "cprogs" / "probe.c"
TIMEOUT = 60
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"]

# What the kernel reports for the probe's death, and its killer's message.
KILLED_BY_GUARD = -9  # SIGKILL


@dataclass(frozen=True)
class Probes:
    dynamic: Path
    static: Path

    def get(self, kind: str) -> str:
        return str(self.dynamic if kind == "dynamic" else self.static)


def mosrun_path() -> str:
    path = shutil.which("mosrun")
    if path is None:
        pytest.fail("mosrun is not installed (pip install .)")
    return path


def installed_native_dir() -> Path:
    """mosix/_native of the installed package (as the installed mosrun sees it)."""
    python = sys.executable
    first = Path(mosrun_path()).read_text(errors="replace").splitlines()[0]
    if first.startswith("#!") and "python" in first:
        python = first[2:].strip().split()[0]
    out = subprocess.run(
        [python, "-c", "import mosix.native as n; print(n.NATIVE_DIR)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    )
    return Path(out.stdout.strip())


def build_probes(directory: Path) -> Probes:
    dynamic = build_c(PROBE_SOURCE, directory / "probe", *CFLAGS)
    static = build_c(PROBE_SOURCE, directory / "probe-static", *CFLAGS, static=True)
    return Probes(dynamic, static)


def run(
    *argv: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``argv`` (a plain command) with a timeout, capturing text output."""
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd
    )


def mosrun(
    *argv: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return run(mosrun_path(), *argv, stdin=stdin, cwd=cwd)


def unsupported_message(name: str, nr: int, killed: bool) -> str:
    tail = "killed (mosrun -e lets it continue)" if killed else "fails with ENOSYS"
    return f"unsupported system call {name} ({nr}): {tail}"
