"""A trio deprecation fails the run: in pytest and in the processes it starts.

trio 0.35 removed Process.aclose, deprecated since 0.20; the suite ran green
on an old trio while every migration failed for new installs.  These tests
show that a deprecation warning now fails wherever it is raised.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import trio


def test_a_trio_deprecation_in_a_test_is_an_error() -> None:
    with pytest.raises(trio.TrioDeprecationWarning):
        warnings.warn(trio.TrioDeprecationWarning("deprecated for this test"), stacklevel=1)


def test_a_trio_deprecation_in_a_started_process_is_an_error() -> None:
    code = (
        "import warnings, trio\n"
        "warnings.warn(trio.TrioDeprecationWarning('deprecated for this test'))\n"
        "print('survived')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stdout
    assert "survived" not in result.stdout
    assert "TrioDeprecationWarning" in result.stderr


def test_other_warnings_are_not_made_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import warnings; warnings.warn('plain'); print('ok')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
