"""The one failure of the test cluster: a message for one line, and an exit status."""

from __future__ import annotations

from mosix.exits import EXIT_USAGE

EXIT_FAILED = 1  # the cluster could not be set up, used or removed


class ClusterError(Exception):
    """Setting up, using or removing the test cluster failed; ``str()`` is one line."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


class BadRequest(ClusterError):
    """The caller asked for something that cannot be: no such node, a bad size or name."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)
