"""mosix-testcluster: try a MOSIX cluster on one machine (root).

mosix-testcluster up [-n N] [--cpus C]  N nodes (default 3) at 10.77.0.1..N, each with its mosixd
mosix-testcluster exec K -- CMD    run CMD inside node K (its network, /tmp and agent)
mosix-testcluster status           the nodes, their links, agents and processes
mosix-testcluster down             remove everything
"""

from __future__ import annotations

import os
from typing import Annotated, NoReturn

import typer

from mosix.testcluster.agents import ClusterSettings
from mosix.testcluster.cluster import LocalCluster
from mosix.testcluster.errors import BadRequest, ClusterError
from mosix.testcluster.layout import DEFAULT_NAME, private_to_nodes
from mosix.tools.common import app, run

TOOL = "mosix-testcluster"
cli = app(TOOL, "A local MOSIX test cluster: nodes as network namespaces on this machine.")
Name = Annotated[str, typer.Option("--name", help="which test cluster (several may exist)")]


def failed(e: ClusterError) -> NoReturn:
    typer.echo(f"{TOOL}: {e}", err=True)
    raise typer.Exit(e.status)


@cli.command("up")
def up(
    nodes: Annotated[int, typer.Option("-n", "--nodes", help="how many nodes")] = 3,
    cluster_section: Annotated[
        bool,
        typer.Option(
            "--cluster-config/--no-cluster-config",
            help="give the agents the [cluster] section (node map, secret)",
        ),
    ] = True,
    cpus: Annotated[
        float | None,
        typer.Option("--cpus", help="each node's share of the processors (e.g. 0.6)"),
    ] = None,
    clock_offsets: Annotated[
        bool,
        typer.Option(
            "--clock-offsets",
            help="node k's monotonic and boot-time clocks run k*1000 s ahead (time namespaces)",
        ),
    ] = False,
    name: Name = DEFAULT_NAME,
) -> None:
    """Start N nodes (a leftover cluster of the same name is removed first)."""
    try:
        settings = ClusterSettings() if cluster_section else None
        cluster = LocalCluster(nodes, name, settings, cpus=cpus, clock_offsets=clock_offsets)
        cluster.up()
    except ClusterError as e:
        failed(e)
    last = cluster.address(nodes)
    typer.echo(f"{name}: {nodes} nodes up, {cluster.address(1)} to {last}")
    typer.echo(f"try: {TOOL} exec 1 -- mosctl status")


@cli.command("down")
def down(name: Name = DEFAULT_NAME) -> None:
    """Stop every node and remove the cluster (nothing is left behind)."""
    try:
        LocalCluster(1, name).down()
    except ClusterError as e:
        failed(e)


@cli.command("status")
def status(name: Name = DEFAULT_NAME) -> None:
    """Show each node: address, link, agent, processes."""
    try:
        cluster = LocalCluster.existing(name)
        rows = []
        for k in cluster.numbers:
            pid = cluster.agent_pid(k)
            rows.append(
                f"node{k:<4} {cluster.address(k):<12} "
                f"{'up' if cluster.link_is_up(k) else 'cut':<5} "
                f"{'agent ' + str(pid) if pid else 'no agent':<14} "
                f"{len(cluster.processes(k))} processes"
            )
    except ClusterError as e:
        failed(e)
    typer.echo("\n".join(rows))


@cli.command("exec")
def exec_in_node(
    node: Annotated[str, typer.Argument(help="node number", show_default=False)] = "",
    command: Annotated[list[str] | None, typer.Argument(help="the command (after --)")] = None,
    name: Name = DEFAULT_NAME,
) -> None:
    """Run a command inside a node; its exit status is the command's."""
    try:
        if not node.isdigit() or not command:
            raise BadRequest("exec: want a node number, --, then a command")
        cluster = LocalCluster.existing(name)
        argv = cluster.command(int(node), command, cwd=working_directory())
    except ClusterError as e:
        failed(e)
    os.execvpe(argv[0], argv, cluster.env())


def working_directory() -> str:
    """The caller's directory, unless it is one of the host's own that a node does not see."""
    here = os.getcwd()
    return "/" if private_to_nodes(here) else here


def main() -> None:
    run(cli, TOOL)


if __name__ == "__main__":
    main()
