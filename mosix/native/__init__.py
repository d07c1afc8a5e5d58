"""The seam between Python and the C parts: every C part Python uses is reached here.

One module per part (the psutil way of binding C):

- :mod:`mosix.native.compiled`: the in-process cffi binding (``mosix._native._cnative``,
  defined by :mod:`mosix.native.cffi_build`), loaded on first use only;
- :mod:`mosix.native.checksum`: mxh64, the image checksum (C: csrc/common/ckpt_hash.h);
- :mod:`mosix.native.image_header`: the checks of an image's headers (csrc/common/image_check.h);
- :mod:`mosix.native.capturer`: mosix-ckpt (its arguments, its lines, its exit statuses);
- :mod:`mosix.native.remote_supervisor`: mosix-remote;
- :mod:`mosix.native.zpipe`: mosix-zpipe, a migration image's compression on slow links;
- :mod:`mosix.native.deputy`: mosix-deputy and the restorer it is given;
- :mod:`mosix.native.restorer`: mosix-restore, as mosrun -R executes it.
- :mod:`mosix.native.helper_process`: ``close_process``, how the agents end a helper they started.

What stays plain Python, because a C call would add nothing: pidfds and descriptor
passing (``os.pidfd_open``, ``socket.send_fds``/``recv_fds`` are the system calls
themselves), and the /proc reads of mosix.sysinfo.proc_info (each is one read of
one small file; the agents need every MOSIX_INHERIT word, not just the mode the C
helpers take from it).

This module itself imports nothing compiled: ``native_path`` finds the helpers.
"""

from __future__ import annotations

from pathlib import Path

from mosix.exits import EXIT_USAGE, Failure

NATIVE_DIR = Path(__file__).resolve().parent.parent / "_native"


def native_path(name: str) -> str:
    """Absolute path of a compiled part; a clear failure when it was not built."""
    path = NATIVE_DIR / name
    if not path.exists():
        raise Failure(not_built(path), EXIT_USAGE)
    return str(path)


def not_built(what: object) -> str:
    return (
        f"{what}: missing; the C parts were not built (install with 'pip install .' "
        "or run 'python setup.py build_native' in a checkout)"
    )
