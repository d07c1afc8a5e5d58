"""Exit statuses of mosix commands' own failures (as ``env`` and ``timeout``)."""

from __future__ import annotations

EXIT_USAGE = 125  # bad command line, or mosrun itself failed
EXIT_CANNOT_RUN = 126  # the program was found but could not be run
EXIT_NOT_FOUND = 127  # the program was not found


class Failure(Exception):
    """A failure of mosrun itself, reported as one line with a distinct status."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
