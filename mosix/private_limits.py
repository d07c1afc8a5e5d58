"""The administrator's maximum total size of a process's private temporary files
(mosrun -X; the agent's ``[private]`` section): at home, in the local cluster (a
node of the home's partition) and on the grid (another partition).

At home it is the size of the process's one tmpfs (``csrc/exec/private_dirs.c``):
a write beyond fails with ENOSPC.  Away the target's tmpfs has the home maximum
(a copy never holds more than its home could take back) and its supervisor brings
the process home when the files exceed the away maximum
(``csrc/remote/remote_private_limit.c``).  An away maximum above the home one is
the home one.  0: no maximum of the administrator's.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_MB = 1 << 32  # what mosix-exec -L and mosix-remote -L/-W take


@dataclass(frozen=True)
class PrivateLimits:
    home_mb: int = 0
    cluster_mb: int = 0
    grid_mb: int = 0

    def away_mb(self, same_partition: bool) -> int:
        """The maximum on a node of the home's partition (or of another one)."""
        away = self.cluster_mb if same_partition else self.grid_mb
        if not away:  # none: the home maximum (the tmpfs's size there) still holds
            return 0
        return min(away, self.home_mb) if self.home_mb else away
