"""Running the system's mount and namespace commands (util-linux) with one-line errors."""

from __future__ import annotations

import shutil
import subprocess

from mosix.testcluster.errors import ClusterError


def system_command(argv: list[str], what: str) -> None:
    """Run ``argv``; a failure becomes a ClusterError naming ``what`` and the tool's last line."""
    if shutil.which(argv[0]) is None:
        raise ClusterError(f"{what}: {argv[0]} not found (util-linux is needed)")
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[0] if lines else f"{argv[0]} exited with status {result.returncode}"
        raise ClusterError(f"{what}: {reason}")
