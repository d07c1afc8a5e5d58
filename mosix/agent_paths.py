"""Where the node agent lives: run directory, control socket, lock, log, state.

The system agent (run by root, serving every user) uses /run/mosix.  A user
with no system agent gets a private one under their runtime directory
($XDG_RUNTIME_DIR/mosix, or /tmp/mosix-{uid}).  MOSIX_RUN_DIR overrides both
(tests, and each node of the local test cluster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYSTEM_RUN_DIR = Path("/run/mosix")
RUN_DIR_ENV = "MOSIX_RUN_DIR"


@dataclass(frozen=True)
class AgentPaths:
    run_dir: Path

    @property
    def socket(self) -> Path:
        return self.run_dir / "mosixd.sock"

    @property
    def lock(self) -> Path:
        return self.run_dir / "mosixd.lock"

    @property
    def log(self) -> Path:
        return self.run_dir / "mosixd.log"

    @property
    def state(self) -> Path:
        return self.run_dir / "state.cbor"


def user_run_dir(uid: int | None = None) -> Path:
    uid = os.getuid() if uid is None else uid
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "mosix"
    return Path(f"/tmp/mosix-{uid}")


def own_paths() -> AgentPaths:
    """Where an agent started by this user runs."""
    override = os.environ.get(RUN_DIR_ENV)
    if override:
        return AgentPaths(Path(override))
    if os.geteuid() == 0:
        return AgentPaths(SYSTEM_RUN_DIR)
    return AgentPaths(user_run_dir())


def candidate_paths() -> list[AgentPaths]:
    """Where a client looks for an agent, in order."""
    override = os.environ.get(RUN_DIR_ENV)
    if override:
        return [AgentPaths(Path(override))]
    found = [AgentPaths(SYSTEM_RUN_DIR)]
    if os.geteuid() != 0:
        found.append(AgentPaths(user_run_dir()))
    return found
