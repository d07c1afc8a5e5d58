"""mosixd: the MOSIX node agent.

Runs in the foreground by default (for systemd or a terminal); ``--detach``
makes it a daemon, which is how the first mosrun on a machine starts the
embedded default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mosix.agent_paths import AgentPaths, own_paths
from mosix.home_agent.agent_config import AgentConfig
from mosix.node.config import ConfigError, read_config
from mosix.tools.common import app, fail, run

SITE_CONFIG = Path("/etc/mosix/mosixd.toml")
cli = app("mosixd", "The MOSIX node agent: registry, queue, jobs, native programs, node facts.")


@cli.command()
def main_command(
    detach: Annotated[bool, typer.Option("--detach", help="run as a daemon")] = False,
    config: Annotated[
        Path | None, typer.Option("-c", "--config", help="TOML configuration file")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="socket, lock, log and state directory")
    ] = None,
    ready_fd: Annotated[
        int | None, typer.Option("--ready-fd", help="write 'ready' to this fd when listening")
    ] = None,
) -> None:
    settings = AgentConfig()
    configured_dir: Path | None = None
    if config is None:
        config = default_config_path()
    if config is not None:
        try:
            settings, configured_dir = read_config(config)
        except ConfigError as e:
            fail("mosixd", str(e))
    paths = AgentPaths(run_dir or configured_dir or own_paths().run_dir)
    if not paths.run_dir.is_absolute():
        fail("mosixd", f"--run-dir {paths.run_dir}: must be an absolute path")
    from mosix.node.daemon import run as run_agent

    raise typer.Exit(run_agent(paths, settings, foreground=not detach, ready_fd=ready_fd))


def default_config_path() -> Path | None:
    """$MOSIX_CONFIG, else /etc/mosix/mosixd.toml when it exists."""
    named = os.environ.get("MOSIX_CONFIG")
    if named:
        return Path(named)
    return SITE_CONFIG if SITE_CONFIG.exists() else None


def main() -> None:
    run(cli, "mosixd")


if __name__ == "__main__":
    main()
