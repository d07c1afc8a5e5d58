"""The in-process cffi binding (``mosix._native._cnative``), imported on first use.

Importing it costs a shared library load and cffi's runtime; mosrun and the
tools import it only when they check an image, so their start-up stays as it was.
"""

from __future__ import annotations

import functools
from typing import Any

from mosix.exits import EXIT_USAGE, Failure
from mosix.native import not_built


@functools.cache
def binding() -> tuple[Any, Any]:
    """(ffi, lib) of the compiled binding; a clear failure when it was not built."""
    try:
        from mosix._native import _cnative  # type: ignore[attr-defined]
    except ImportError as e:
        raise Failure(not_built(f"mosix._native._cnative ({e})"), EXIT_USAGE) from None
    return _cnative.ffi, _cnative.lib
