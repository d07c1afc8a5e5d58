"""The queue common to a partition, in a real 3-node test cluster ([queue] slots = 1
on every node): jobs queued at node 1 start on idle nodes 2 and 3, mosq on any node
lists and changes the whole queue, priorities order jobs queued at different nodes,
and killing the agent that keeps the queue loses no job and starts none twice.

Each job is the migrant program (tests/cprogs/migrant.c), which waits for a line on
its stdin: a started job holds its slot until the test writes that line.  Where a
job ran is read from its home agent's log ("process P migrated to node N").

The agents run with the relay's test hook (HOLD_ENV): while a node has HOLD_PATH,
it holds its started jobs' announcements to a new keeper, the worst order for it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from support.clusters import bring_up, node_programs
from support.waiting import wait_until

from mosix.cluster.nodemap import NodeMap
from mosix.cluster.peers import Cluster
from mosix.cluster.settings import ClusterConfig
from mosix.protocol import LoadVector
from mosix.queue.keeper import SETTLE_SECONDS, QueueKeeper
from mosix.queue.partition import (
    QUEUE_KEEPER,
    QUEUE_SLOTS,
    QUEUE_STARTED,
    NodeRoom,
    StartedJob,
    choose_node,
    started_text,
)
from mosix.queue.queue import QueuedJob
from mosix.queue.relay import HOLD_ENV
from mosix.testcluster import LocalCluster

TIMEOUT = 120
EXPECTED_SUM = sum(range(200000000))
CONFIG = "/etc/mosix/mosixd.toml"
HOLD_PATH = "/run/mosix/test-queue-hold"  # in a node's own /run/mosix


@pytest.fixture(scope="module")
def migrant() -> Iterator[str]:
    with node_programs("partqueue", {"migrant": ["-O0", "migrant.c"]}) as directory:
        yield str(directory / "migrant")


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes, one queue slot each, their agents with the test hook."""
    made = bring_up(3)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(HOLD_ENV, HOLD_PATH)  # for every agent started here (node_env)
            for k in made.numbers:
                path = made.node_path(k, CONFIG)
                path.write_text(path.read_text() + "[queue]\nslots = 1\n")
                made.restart_agent(k)
            wait_until(lambda: all(alive_nodes(made, k) == 3 for k in made.numbers), what="3 up")
            yield made
    finally:
        made.down()


def alive_nodes(cluster: LocalCluster, k: int) -> int:
    out = cluster.run(k, ["mosctl", "rstatus", "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        return 0
    return sum(1 for node in json.loads(out.stdout) if node["state"] == "up")


@dataclass
class Job:
    node: int  # where its mosrun runs (its home)
    proc: subprocess.Popen[str]
    out: str  # its file, in its node's /tmp

    @property
    def pid(self) -> int:
        return self.proc.pid


def queue(cluster: LocalCluster, k: int, migrant: str, name: str, option: str = "-q") -> Job:
    proc = cluster.popen(
        k,
        ["mosrun", option, migrant, name, "7"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Job(k, proc, name)


def finish(cluster: LocalCluster, job: Job) -> None:
    """Let ``job`` go on; it ran once, in full, as it would anywhere."""
    stdout, stderr = job.proc.communicate("hello\n", timeout=TIMEOUT)
    assert job.proc.returncode == 7, stderr
    assert stdout == f"got hello pid {job.pid} sum {EXPECTED_SUM}\n", stderr
    written = cluster.node_path(job.node, f"/tmp/{job.out}").read_text()
    assert written == f"hello {EXPECTED_SUM}\n"


def listing(cluster: LocalCluster, k: int) -> list[dict[str, object]]:
    out = cluster.run(k, ["mosq", "listall", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    entries: list[dict[str, object]] = json.loads(out.stdout)
    return entries


def queued_pids(cluster: LocalCluster, k: int) -> list[int]:
    """The queued jobs' pids, in the order they will start, as node k's mosq shows them."""
    return [int(str(e["pid"])) for e in listing(cluster, k)]


def started(cluster: LocalCluster, job: Job) -> bool:
    """The queue let it go: it is the program now, at home or moved to another node."""
    try:
        with open(f"/proc/{job.pid}/comm") as f:
            if f.read().strip() == "migrant":
                return True
    except FileNotFoundError:
        return True
    return ran_on(cluster, job) != job.node


def ran_on(cluster: LocalCluster, job: Job) -> int:
    """The node ``job`` was placed on (its own: it stayed home)."""
    log = cluster.agent_log(job.node).read_text()
    found = re.findall(rf"process {job.pid} migrated to node (\d+)", log)
    assert len(found) <= 1, found
    return int(found[0]) if found else job.node


def placed(cluster: LocalCluster, job: Job) -> bool:
    """It runs where it will: moved to another node, or reading its stdin at home."""
    if ran_on(cluster, job) != job.node:
        return True
    try:
        with open(f"/proc/{job.pid}/syscall") as f:
            return f.read().split()[:2] == ["0", "0x0"]
    except (FileNotFoundError, ProcessLookupError):
        return False


def settle(cluster: LocalCluster, jobs: list[Job]) -> None:
    for job in jobs:
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.wait(timeout=TIMEOUT)
    wait_until(lambda: not queued_pids(cluster, 1), what="an empty queue", period=0.5)


def test_jobs_queued_at_node_1_start_on_idle_nodes_2_and_3(
    cluster: LocalCluster, migrant: str
) -> None:
    jobs = [queue(cluster, 1, migrant, f"idle{i}.out") for i in range(3)]
    try:
        wait_until(lambda: all(placed(cluster, j) for j in jobs), what="3 jobs placed")
        assert sorted(ran_on(cluster, j) for j in jobs) == [1, 2, 3]
        extra = queue(cluster, 1, migrant, "idle3.out")
        jobs.append(extra)
        # every slot of the partition is taken: it waits, and node 3's mosq shows it
        wait_until(lambda: queued_pids(cluster, 3) == [extra.pid], what="node 3 lists it")
        entry = listing(cluster, 3)[0]
        assert entry["node"] == 1 and entry["position"] == 1
        text = cluster.run(3, ["mosq", "listall"], capture_output=True, text=True, timeout=30)
        assert re.search(rf"^\s*1\s+{extra.pid}\s.*\s1\s+{re.escape(migrant)}", text.stdout, re.M)
        assert not started(cluster, extra)
        finish(cluster, jobs[0])  # a slot is free: the extra job takes it
        wait_until(lambda: started(cluster, extra), what="the 4th job started")
        for job in jobs[1:]:
            finish(cluster, job)
    finally:
        settle(cluster, jobs)


def test_mosq_on_another_node_changes_the_partitions_queue(
    cluster: LocalCluster, migrant: str
) -> None:
    blockers = [queue(cluster, 1, migrant, f"block{i}.out") for i in range(3)]
    jobs: list[Job] = []
    try:
        wait_until(lambda: all(started(cluster, j) for j in blockers), what="3 blockers")
        for k in (1, 2):  # one after the other: node 1's job came first
            jobs.append(queue(cluster, k, migrant, f"act{k}.out"))
            wait_until(lambda: queued_pids(cluster, 3) == [j.pid for j in jobs], what="queued")
        retard = cluster.run(3, ["mosq", "retard", str(jobs[0].pid)], capture_output=True)
        assert retard.returncode == 0, retard.stderr
        assert queued_pids(cluster, 2) == [jobs[1].pid, jobs[0].pid]
        abort = cluster.run(3, ["mosq", "abort", str(jobs[1].pid)], capture_output=True)
        assert abort.returncode == 0, abort.stderr
        jobs[1].proc.communicate(timeout=TIMEOUT)
        assert jobs[1].proc.returncode == -signal.SIGKILL
        assert queued_pids(cluster, 1) == [jobs[0].pid]
        run = cluster.run(2, ["mosq", "run", str(jobs[0].pid)], capture_output=True)
        assert run.returncode == 0, run.stderr
        wait_until(lambda: started(cluster, jobs[0]), what="mosq run started it")
        finish(cluster, jobs[0])
        for job in blockers:
            finish(cluster, job)
    finally:
        settle(cluster, blockers + jobs)


def test_priorities_order_jobs_queued_at_different_nodes(
    cluster: LocalCluster, migrant: str
) -> None:
    blockers = [queue(cluster, 1, migrant, f"pblock{i}.out") for i in range(3)]
    jobs: list[Job] = []
    try:
        wait_until(lambda: all(started(cluster, j) for j in blockers), what="3 blockers")
        # arrival order: node 1's (70), node 2's (60), node 3's (55)
        for k, priority in ((1, 70), (2, 60), (3, 55)):
            jobs.append(queue(cluster, k, migrant, f"pri{k}.out", f"-q{priority}"))
            count = len(jobs)
            wait_until(lambda n=count: len(queued_pids(cluster, 1)) == n, what="queued")
        expected = [jobs[2], jobs[1], jobs[0]]
        assert queued_pids(cluster, 2) == [j.pid for j in expected]
        for blocker, first in zip(blockers, expected, strict=True):
            finish(cluster, blocker)
            wait_until(lambda j=first: started(cluster, j), what=f"node {first.node}'s job next")
            assert sum(1 for j in jobs if started(cluster, j)) == expected.index(first) + 1
        for job in jobs:
            finish(cluster, job)
    finally:
        settle(cluster, blockers + jobs)


def test_killing_the_keepers_agent_loses_no_job_and_starts_none_twice(
    cluster: LocalCluster, migrant: str
) -> None:
    blockers = [queue(cluster, k, migrant, f"kblock{k}.out") for k in (1, 2, 3)]
    jobs: list[Job] = []
    try:
        wait_until(lambda: all(started(cluster, j) for j in blockers), what="3 blockers")
        for k in (3, 1, 2):
            jobs.append(queue(cluster, k, migrant, f"kept{k}.out"))
            wait_until(lambda: queued_pids(cluster, 2) == [j.pid for j in jobs], what="queued")
        order = [j.pid for j in jobs]
        keeper = cluster.agent_pid(1)
        assert keeper is not None
        os.kill(keeper, signal.SIGKILL)
        wait_until(
            lambda: cluster.agent_pid(1) not in (None, keeper), what="a new agent", timeout=60
        )
        # the queue is whole again, in its order, and the blockers still hold every slot
        wait_until(lambda: queued_pids(cluster, 3) == order, what="the same queue", timeout=60)
        time.sleep(4)  # past the new keeper's settling: nothing may start meanwhile
        assert not any(started(cluster, j) for j in jobs)
        assert queued_pids(cluster, 1) == order
        for blocker in blockers:
            finish(cluster, blocker)
        wait_until(lambda: all(started(cluster, j) for j in jobs), what="all started", timeout=60)
        for job in jobs:
            finish(cluster, job)
        for k in cluster.numbers:
            log = cluster.agent_log(k).read_text()
            for job in jobs:
                assert len(re.findall(rf"process {job.pid} migrated", log)) <= 1
    finally:
        settle(cluster, blockers + jobs)


def test_a_keeper_counts_the_slots_the_load_vectors_report() -> None:
    """A new keeper (node 1 of 3, [queue] slots = 1) counts the slots of the jobs that
    each node's load vector reports started, before it hears of them; it starts nothing
    before it heard from every node (or dead_after passed) nor while a live node takes
    another node as the keeper."""
    cluster = Cluster(ClusterConfig(1, NodeMap.parse("1 127.0.0.1 3"), b"secret"))
    keeper = QueueKeeper(cluster, 50, 1)
    now = time.monotonic()

    def vector(node: int, keeper_node: int, started: list[StartedJob]) -> None:
        extra: dict[str, int | float | str] = {QUEUE_SLOTS: 1, QUEUE_KEEPER: keeper_node}
        extra[QUEUE_STARTED] = started_text(started)
        cluster.table.record(LoadVector(node=node, free_mb=1000, extra=extra), now)

    assert keeper.keeping()
    keeper.began = now - SETTLE_SECONDS  # settled, but for node 3, not heard from yet
    vector(2, 2, [])  # node 2 kept the queue while node 1 was down, and still does
    assert not keeper.settled() and not keeper.agreed()
    keeper.began = now - cluster.config.dead_after  # node 3 counts as down now
    assert keeper.settled()
    keeper.began = now - SETTLE_SECONDS
    cluster.table.record(LoadVector(node=3), now - 2 * cluster.config.dead_after)
    assert keeper.settled()  # heard from, and down since: no reason to wait
    vector(2, 1, [])
    vector(3, 1, [StartedJob(3, 7, 2, 1), StartedJob(3, 8, 3, 1), StartedJob(3, 9, 4, 1)])
    assert keeper.settled() and keeper.agreed()
    rooms = keeper.rooms()  # node 3's job 7 holds node 2's slot (no node 4: left out)
    assert {n: (r.slots, r.used) for n, r in rooms.items()} == {1: (1, 0), 2: (1, 1), 3: (1, 1)}
    mine = QueuedJob(1, 100, None, 0, 0, 50, "q", 0, 1, [b"x"], node=2)
    assert choose_node(mine, True, rooms) == 1
    keeper.released[(3, 7)] = now  # it ended; node 3's vector does not say so yet
    assert keeper.rooms()[2].used == 0
    vector(3, 1, [StartedJob(3, 8, 3, 1), StartedJob(3, 99, 2, 1)])
    cluster.table.vectors[3] = replace(
        cluster.table.vectors[3], extra={QUEUE_STARTED: "x 1:2 8:3:1:1 -1:2:1"}
    )
    assert keeper.rooms()[2].used == 0 and keeper.rooms()[3].used == 0  # malformed: none
    assert not keeper.agreed()  # a vector that names no keeper


def test_where_a_job_fits() -> None:
    """Its own node first; else, if it may move, the node with the most free slots
    whose memory takes its -m; a job wider than a node (-P) runs there alone."""

    def job(node: int, parallel: int = 1, memory_mb: int = 0) -> QueuedJob:
        return QueuedJob(1, 100, None, 0, 0, 50, "q", memory_mb, parallel, [b"x"], node=node)

    def rooms() -> dict[int, NodeRoom]:
        return {1: NodeRoom(1, 2, 1000, used=1), 2: NodeRoom(2, 2, 500), 3: NodeRoom(3, 4, 100)}

    assert choose_node(job(1), True, rooms()) == 1
    full = rooms()
    full[1].hold(1, 0, 0.0)
    assert choose_node(job(1), True, full) == 3  # 4 free slots
    assert choose_node(job(1), False, full) is None  # -S lines, -R, own placements
    assert choose_node(job(1, memory_mb=200), True, full) == 2
    assert choose_node(job(1, memory_mb=2000), True, full) is None
    assert choose_node(job(2, parallel=8), True, rooms()) == 2  # alone on a free node
    promised = rooms()
    promised[2].hold(0, 450, 1.0)  # just started there: its -m is not in free_mb yet
    assert choose_node(job(2, memory_mb=100), False, promised) is None


@pytest.mark.parametrize(
    "hold",
    [False, True],
    ids=["as_it_comes", "node_3_announces_last"],
)
def test_the_next_node_keeps_the_queue_while_node_1_is_down(
    cluster: LocalCluster, migrant: str, hold: bool
) -> None:
    """When node 1 takes the queue back, node 2's queued job must not start in node 2's
    slot, which node 3's job holds: also when node 1 hears of that job last (hold)."""
    held = cluster.node_path(3, HOLD_PATH)
    blockers = [queue(cluster, k, migrant, f"nblock{k}.out") for k in (1, 2, 3)]
    jobs: list[Job] = []
    try:
        wait_until(lambda: all(placed(cluster, j) for j in blockers), what="3 blockers")
        assert [ran_on(cluster, j) for j in blockers] == [1, 2, 3]
        for k in (3, 2):
            jobs.append(queue(cluster, k, migrant, f"next{k}.out"))
            wait_until(lambda: queued_pids(cluster, 2) == [j.pid for j in jobs], what="queued")
        cluster.kill_node(1)  # its agent, its blocker: node 1 is gone
        wait_until(lambda: alive_nodes(cluster, 2) == 2, what="node 1 seen down", timeout=60)
        # node 2 keeps the queue now: the same jobs, in order, and the slots still held
        wait_until(lambda: queued_pids(cluster, 3) == [j.pid for j in jobs], what="node 2's")
        time.sleep(4)  # past the new keeper's settling: nothing may start meanwhile
        assert not any(started(cluster, j) for j in jobs)
        finish(cluster, blockers[1])  # node 2's slot: the first job takes it
        wait_until(lambda: placed(cluster, jobs[0]), what="node 3's job started")
        assert ran_on(cluster, jobs[0]) == 2 and not started(cluster, jobs[1])
        if hold:  # node 3's started jobs reach node 1 only after it chose
            held.touch()
        cluster.start_agent(1)  # node 1 is back with a free slot, and keeps the queue again
        wait_until(lambda: placed(cluster, jobs[1]), what="node 2's job started", timeout=60)
        assert ran_on(cluster, jobs[1]) == 1
        held.unlink(missing_ok=True)
        for job in [blockers[2], *jobs]:
            finish(cluster, job)
    finally:
        held.unlink(missing_ok=True)
        settle(cluster, blockers + jobs)


def test_an_isolated_node_queues_its_own_jobs(cluster: LocalCluster, migrant: str) -> None:
    """mosctl isolate: the node keeps its own jobs' queue (the others see it down);
    mosctl rejoin: the job still waiting there joins the partition's queue again."""
    jobs: list[Job] = []
    try:
        isolate = cluster.run(3, ["mosctl", "isolate"], capture_output=True, text=True)
        assert isolate.returncode == 0, isolate.stderr
        try:
            wait_until(lambda: alive_nodes(cluster, 1) == 2, what="node 3 seen down", timeout=60)
            jobs.append(queue(cluster, 3, migrant, "alone0.out"))
            wait_until(lambda: placed(cluster, jobs[0]), what="its job started")
            assert ran_on(cluster, jobs[0]) == 3
            jobs.append(queue(cluster, 3, migrant, "alone1.out"))  # its only slot is taken
            wait_until(lambda: queued_pids(cluster, 3) == [jobs[1].pid], what="node 3 lists it")
            assert queued_pids(cluster, 1) == [] and not started(cluster, jobs[1])
        finally:
            rejoin = cluster.run(3, ["mosctl", "rejoin"], capture_output=True, text=True)
            assert rejoin.returncode == 0, rejoin.stderr
        wait_until(lambda: alive_nodes(cluster, 3) == 3, what="node 3 back", timeout=60)
        # back in the partition: node 1 keeps its waiting job, and starts it on a free node
        wait_until(lambda: placed(cluster, jobs[1]), what="its 2nd job started", timeout=60)
        assert ran_on(cluster, jobs[1]) in (1, 2)
        for job in jobs:
            finish(cluster, job)
    finally:
        settle(cluster, jobs)


def test_a_batchs_lines_wait_in_the_partitions_queue_ten_at_most(cluster: LocalCluster) -> None:
    """-S30 -q at node 1: a line runs in node 1's slot (the runner starts its lines where it
    runs: they take no other node's slot), and of the other 29 exactly 10 wait in the
    queue common to the partition (node 3's mosq shows them)."""
    gate, started_file = cluster.node_path(1, "/tmp/sgate"), cluster.node_path(1, "/tmp/sstarted")
    os.mkfifo(gate)
    holder = os.open(gate, os.O_RDWR)  # the lines' reads wait for data, not for a writer
    commands = cluster.node_path(1, "/tmp/scommands")
    commands.write_text("echo s >> /tmp/sstarted; read x < /tmp/sgate\n" * 30)
    run = cluster.popen(1, ["mosrun", "-S30", "-q", "/tmp/scommands"], stderr=subprocess.PIPE)
    try:

        def lines_started() -> int:
            return started_file.read_text().count("s") if started_file.exists() else 0

        wait_until(lambda: lines_started() == 1, what="a line in node 1's slot")
        wait_until(lambda: len(listing(cluster, 3)) == 10, what="ten lines queued")
        assert lines_started() == 1
        os.write(holder, b"go\n" * 30)
        _, err = run.communicate(timeout=TIMEOUT)
        assert (run.returncode, err) == (0, b"")
        assert lines_started() == 30
        assert listing(cluster, 3) == []
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        os.close(holder)
        for path in (gate, started_file, commands):
            path.unlink(missing_ok=True)
