"""mosix-restore (csrc/restore/mosix_restore.c): the restorer a recovering mosrun becomes.

mosrun -R executes it through the launcher (mosix.discipline.launcher), so it is
never spawned as a child: this module gives its argument list.  Its refusals go
to ``error_fd`` as one line, then it exits; Python is no longer there to see them.
"""

from __future__ import annotations

from mosix.native import native_path
from mosix.native_names import Program

PROGRAM = Program.RESTORER


def argv(prog_name: str, image_fd: int, error_fd: int = -1) -> list[str]:
    """Restore the image on ``image_fd``; ``prog_name`` prefixes its messages."""
    words = [native_path(PROGRAM), "-p", prog_name]
    words += ["-e", str(error_fd)] if error_fd >= 0 else []
    return [*words, str(image_fd)]
