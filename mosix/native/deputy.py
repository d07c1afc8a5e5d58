"""mosix-deputy (csrc/deputy/mosix_deputy.c): the process a migrated one becomes at home.

The capturer makes the process execute it in place (``mosix-ckpt -D``), so
Python never spawns it: this module gives its argument list.  It connects to
the agent (``DeputyOp`` in mosix.native_names) and, to come home, runs the
restorer (``mosix-restore``) it is given.
"""

from __future__ import annotations

from mosix.native import native_path
from mosix.native_names import Program

PROGRAM = Program.DEPUTY
RESTORER = Program.RESTORER


def argv(socket_path: str, token: str) -> list[str]:
    """The deputy's words: its agent's socket and its migration's token."""
    return [native_path(PROGRAM), "-a", socket_path, "-k", token, "-r", native_path(RESTORER)]
