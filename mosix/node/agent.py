"""mosixd's parts, built through their constructors and started in order.

The composition root of the node agent: the home side (mosix.home_agent),
the host side (mosix.remote_agent) and the cluster transport (mosix.cluster)
meet here and nowhere else.  The registry and the cluster's listener exist
before the event loop (a port that cannot be used stops the daemon at once);
every other part is built inside the agent's nursery, so a part that starts
tasks gets the nursery in its constructor, and each long-running part is
started with ``nursery.start`` (it is running when the next one starts).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import AsyncIterator

import trio

from mosix.agent_paths import SYSTEM_RUN_DIR, AgentPaths
from mosix.cluster.admin import GUESTS
from mosix.cluster.peers import Cluster
from mosix.cluster.saved_settings import SavedSettings
from mosix.home_agent import admission_key
from mosix.home_agent.admission import Admission
from mosix.home_agent.agent_config import AgentConfig
from mosix.home_agent.auto_freeze import AutoFreezer
from mosix.home_agent.batch_submit import BatchSubmitter
from mosix.home_agent.checkpoint_requests import CheckpointRequests, mosix_process
from mosix.home_agent.checkpoints import Checkpoints, last_image
from mosix.home_agent.cluster_services import ClusterServices
from mosix.home_agent.control_socket import ControlSocket
from mosix.home_agent.freezing import Freezer, default_freeze_dir
from mosix.home_agent.guard_watch import GuardWatch
from mosix.home_agent.limits import usable_connections
from mosix.home_agent.process_requests import ProcessRequests
from mosix.home_agent.registry import Registry, at_home
from mosix.home_agent.server import Server
from mosix.home_agent.shares import UserShares
from mosix.home_agent.site_group import SiteGroup
from mosix.home_agent.state import Changes, SavedState
from mosix.home_agent.status_requests import StatusRequests
from mosix.node.administration import Administration
from mosix.node.loop_watchdog import LoopWatchdog
from mosix.node.task_dump import dump_tasks_on_signal
from mosix.protocol import QueueAsk, QueueEnter
from mosix.queue.keeper import QueueKeeper
from mosix.queue.partition import QUEUE_SLOTS
from mosix.queue.queue import Capacity, Queue
from mosix.queue.relay import QueueRelay
from mosix.queue.requests import QueueRequests
from mosix.queue.runner import QueueRunner
from mosix.queue.saved import SavedQueue
from mosix.remote_agent.hosting import Hosting
from mosix.sysinfo import node_facts, proc_info

log = logging.getLogger("mosixd")


class NodeAgent:
    def __init__(self, paths: AgentPaths, config: AgentConfig) -> None:
        self.paths = paths
        self.config = config
        key = admission_key.load(paths.run_dir) if config.mosrun_group else b""
        self.site = SiteGroup(config.mosrun_group, config.mosrun_gid, key)
        self.registry = Registry(
            config.name,
            socket=str(paths.socket),
            private=os.geteuid() == 0 and paths.run_dir != SYSTEM_RUN_DIR,
            site=self.site,
        )
        registry = self.registry
        self.cluster = (
            Cluster(config.cluster, config.speed, lambda: len(registry.registered))
            if config.cluster is not None
            else None
        )

    async def serve(
        self,
        listener: trio.socket.SocketType,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        paths, config, registry, cluster = self.paths, self.config, self.registry, self.cluster
        queue = Queue(config.default_priority)
        capacity = Capacity(
            slots=config.queue_slots,
            memory_available_mb=lambda: node_facts.memory_mb()[1],
            memory_in_use_mb=proc_info.rss_mb,
        )
        changes = Changes()
        settings = SavedSettings(cluster) if cluster is not None else None
        state = SavedState(paths.state, registry, SavedQueue(queue, capacity), changes, settings)
        lost = state.load()
        registration_of = functools.partial(mosix_process, registry)
        stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            services = None
            hosting = None
            if cluster is not None:
                hosting = Hosting(cluster, changes.changed)
                services = ClusterServices(
                    cluster,
                    str(paths.socket),
                    changes.changed,
                    nursery,
                    registrations=registry.mosix_processes,
                    last_checkpoint=functools.partial(last_image, registration_of),
                )
            checkpoints = Checkpoints(
                registration_of,
                config.checkpoint_minute,
                persist=state.save,
                away=services.away_checkpoints if services is not None else None,
            )
            for reg in registry.registered.values():
                checkpoints.schedule(nursery, reg)
            freeze_dir = config.freeze_dir or default_freeze_dir(paths.run_dir)
            freezer = Freezer(str(paths.socket), freeze_dir, changes.changed, nursery)
            freezer.take_back(list(registry.registered.values()))
            if config.freeze_max_running > 0:
                auto = AutoFreezer(
                    freezer,
                    registry.mosix_processes,
                    config.freeze_max_running,
                    config.freeze_interval,
                )
                nursery.start_soon(auto.run)
            runner = QueueRunner(queue, capacity, changes, lost, nursery)
            await nursery.start(runner.run)
            if cluster is not None:  # the queue is the partition's (mosix.queue.keeper)
                keeper = QueueKeeper(cluster, config.default_priority, config.queue_slots)
                cluster.on(QueueEnter, keeper.enter)
                cluster.on(QueueAsk, keeper.ask)
                nursery.start_soon(keeper.run)
                runner.relay = QueueRelay(cluster, nursery, capacity.running, changes.changed)
                runner.relay.resume()
            await nursery.start(state.saver)
            waiting = runner.relay.waiting if runner.relay is not None else queue
            shares = UserShares(config.limits, waiting, registry)
            admission = Admission(config.limits, usable_connections(config.limits))
            administration = Administration(
                cluster, services, hosting.guests if hosting is not None else None, changes.changed
            )
            batches = (
                BatchSubmitter(cluster, services.chooser, config.name)
                if cluster is not None and services is not None
                else None
            )
            if cluster is not None:
                relay = runner.relay
                cluster.local_extra = lambda: {
                    GUESTS: administration.counts()[0],
                    QUEUE_SLOTS: config.queue_slots,
                    **(relay.report() if relay is not None else {}),
                }
            checkpoint_requests = CheckpointRequests(registry, checkpoints, changes, nursery)
            if services is not None:  # a copy's own checkpoint call, made where it runs
                services.migrations.program_checkpoint = checkpoint_requests.for_copy_away
                services.migrations.private_limits = config.private
            server = Server(
                config.limits,
                os.geteuid(),
                admission,
                ProcessRequests(
                    registry,
                    shares,
                    checkpoints,
                    services,
                    changes,
                    nursery,
                    freezer,
                    config.private.home_mb,
                ),
                QueueRequests(
                    config.default_priority, queue, capacity, runner, shares, changes, runner.relay
                ),
                runner,
                checkpoint_requests,
                StatusRequests(
                    config,
                    registry,
                    queue,
                    capacity,
                    cluster,
                    services.where if services is not None else at_home,
                    services.balancer if services is not None else None,
                    administration.counts,
                    batches.listing if batches is not None else list,
                ),
                services.migrations if services is not None else None,
                GuardWatch(registry.ours, nursery),
                administration.order,
                stopping,
                freezer,
                batches,
                self.site,
                hosting.mosruns.runs if hosting is not None else lambda pid: False,
            )
            await nursery.start(
                ControlSocket(listener, config.limits, admission, server.handle).run
            )
            if cluster is not None:
                await nursery.start(cluster.run)
            if services is not None and services.balancer is not None:
                nursery.start_soon(services.balancer.run)
            await nursery.start(dump_tasks_on_signal)  # kill -USR1: what each task waits for
            await nursery.start(LoopWatchdog().beat)  # a loop that stops turning is logged
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                nursery.start_soon(wait_signal, signals, stopping)
                task_status.started()
                await stopping.wait()
            await runner.stop()  # orderly stop: -q jobs are killed, -Q jobs run
            state.save()
            log.info("stopped")
            nursery.cancel_scope.cancel()


async def wait_signal(signals: AsyncIterator[int], stopping: trio.Event) -> None:
    async for sig in signals:
        log.info("signal %d: stopping", sig)
        stopping.set()
        return
