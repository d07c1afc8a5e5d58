"""Running a command inside a node: its namespaces, through util-linux nsenter.

nsenter opens the namespace files from the host, then enters the network and
mount namespaces (and the time namespace, when the cluster gives its nodes
their own clocks) and executes the command (no extra process stays around, so
the exit status and signals are the command's own).  The working directory is
looked up inside the node (``--wdns``): a cwd under the node's private /tmp is
the node's, not the host's.
"""

from __future__ import annotations

import os

from mosix.agent_paths import RUN_DIR_ENV
from mosix.testcluster import clocks, cpu_limit
from mosix.testcluster.layout import CONFIG_PATH, Layout


def node_command(layout: Layout, k: int, argv: list[str], cwd: str | None = None) -> list[str]:
    """``argv`` wrapped to run in node k, in ``cwd`` (default: "/"), in its cgroup if any."""
    return cpu_limit.joining(
        layout,
        k,
        [
            "nsenter",
            f"--net={layout.netns_file(k)}",
            f"--mount={layout.mount_ns_file(k)}",
            *clocks.entering(layout, k),
            f"--wdns={cwd or '/'}",
            "--",
            *argv,
        ],
    )


def node_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process of a node: its own agent and configuration.

    A run directory inherited from the host (MOSIX_RUN_DIR, as tests set it) would
    point past the node's agent, so it is dropped; MOSIX_CONFIG names the node's file.
    """
    env = dict(os.environ if base is None else base)
    env.pop(RUN_DIR_ENV, None)
    env["MOSIX_CONFIG"] = CONFIG_PATH
    return env
