"""Where the compiled parts of the package are (built by setup.py)."""

from __future__ import annotations

from pathlib import Path

from mosix.exits import EXIT_USAGE, Failure

NATIVE_DIR = Path(__file__).resolve().parent / "_native"


def native_path(name: str) -> str:
    """Absolute path of a compiled part; a clear failure when it was not built."""
    path = NATIVE_DIR / name
    if not path.exists():
        raise Failure(
            f"{path}: missing; the C parts were not built (install with 'pip install .' "
            "or run 'python setup.py build_native' in a checkout)",
            EXIT_USAGE,
        )
    return str(path)
