"""Multi-threaded processes migrate (issue 16, stage 1: threads move).

A real 3-node test cluster; the programs of tests/test_thread_checkpoint.py (the
pthread C program: mutex, condition variable, barrier, TLS, a sleeping thread,
a thread in a futex wait, per-thread masks and pending signals; the python3
threading script), each started at node 1 under ``mosrun -L``, paused with its
threads alive (its main thread blocked reading the home stdin), moved to node 2,
node 3 and home with ``migrate``, then let go: its output must be byte-identical
to a native run, with the same exit status.  Also: ``-rnode2`` starts a threaded
program away, a checkpoint taken away holds every thread, ``exit_group`` from a
thread other than the main one ends the process at home with its status, a fork
from such a thread brings the process home first, and a signal sent to the home
pid ends a threaded process away.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clusters import bring_up, moved, node_programs, registered_where
from support.waiting import wait_until
from test_thread_checkpoint import PY_THREADS

from mosix.ckpt.image import read_head_from
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

TIMEOUT = 120.0

EXIT_FROM_THREAD = r"""
/* A thread other than the main one says it is there, reads the home stdin,
 * writes what it read and ends the process (exit_group) while main waits in
 * pthread_join: status 7.  Its calls are the forwarded ones. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *ender(void *arg)
{
    (void)arg;
    printf("paused\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1)
        return NULL;
    printf("thread read %c and ends the process\n", c);
    fflush(stdout);
    exit(7);
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, ender, NULL) != 0)
        return 1;
    pthread_join(t, NULL);
    printf("main went on\n");
    return 2;
}
"""

FORK_FROM_THREAD = r"""
/* Main pauses forever; a second thread reads the home stdin, forks (away: the
 * process comes home first), waits for its child (status 5) and ends the
 * process with status 4. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *run(void *arg)
{
    (void)arg;
    char c;
    if (read(0, &c, 1) != 1)
        return NULL;
    pid_t child = fork();
    if (child == 0) {
        printf("child of a thread\n");
        fflush(stdout);
        _exit(5);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child)
        exit(1);
    printf("thread saw %d\n", WEXITSTATUS(status));
    fflush(stdout);
    exit(4);
}

int main(void)
{
    pthread_t t;
    printf("paused\n");
    fflush(stdout);
    if (pthread_create(&t, NULL, run, NULL) != 0)
        return 1;
    for (;;)
        pause();
}
"""


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes, no automatic balancing: the tests' moves are the only ones."""
    made = bring_up(3, cluster=ClusterSettings(balance_interval=0))
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="module")
def programs() -> Iterator[dict[str, list[str]]]:
    source = Path("/var/tmp") / f"mosix-exit-thread-{__name__}.c"
    source.write_text(EXIT_FROM_THREAD)
    forker = Path("/var/tmp") / f"mosix-fork-thread-{__name__}.c"
    forker.write_text(FORK_FROM_THREAD)
    builds = {
        "pthreads": ["-O2", "-pthread", "thread_ckpt.c"],
        "exit_thread": ["-O2", "-pthread", str(source)],
        "fork_thread": ["-O2", "-pthread", str(forker)],
    }
    try:
        with node_programs("threadsaway", builds) as directory:
            (directory / "threads.py").write_text(PY_THREADS)
            directory.chmod(0o755)
            yield {
                "pthreads": [str(directory / "pthreads")],
                "python": [sys.executable, "-P", str(directory / "threads.py")],
                "exit_thread": [str(directory / "exit_thread")],
                "fork_thread": [str(directory / "fork_thread")],
            }
    finally:
        source.unlink(missing_ok=True)
        forker.unlink(missing_ok=True)


def native(cluster: LocalCluster, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return cluster.run(1, argv, input="x", capture_output=True, text=True, timeout=TIMEOUT)


def paused(cluster: LocalCluster, argv: list[str]) -> subprocess.Popen[str]:
    proc = cluster.popen(
        1,
        ["mosrun", *argv],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "paused\n", (line, proc.communicate(timeout=TIMEOUT))
    return proc


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def settled_at(cluster: LocalCluster, pid: int, where: str) -> None:
    wait_until(lambda: registered_where(cluster, pid) == where, TIMEOUT, what=f"{pid} at {where}")


@pytest.mark.parametrize("kind", ["pthreads", "python"])
def test_threads_move_on_and_home_byte_identical(
    cluster: LocalCluster, programs: dict[str, list[str]], kind: str
) -> None:
    argv = programs[kind]
    reference = native(cluster, argv)
    assert reference.returncode == 3, reference.stderr
    proc = paused(cluster, ["-L", *argv])
    try:
        threads = threads_of(proc.pid)
        assert threads == 5
        for target in ("2", "3"):
            moved(cluster, proc, target)
            settled_at(cluster, proc.pid, f"node{target}")
            assert proc.poll() is None
        moved(cluster, proc, "home")
        settled_at(cluster, proc.pid, "home")
        assert threads_of(proc.pid) == threads  # all of them came home
        out, err = proc.communicate("x", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 3), err


def test_a_threaded_program_starts_away(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["pthreads"]
    reference = native(cluster, argv)
    proc = paused(cluster, ["-rnode2", *argv])
    try:
        settled_at(cluster, proc.pid, "node2")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # pthread_kill away: the thread is signalled where it runs (mosix_remote.c)
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 3), err


def test_exit_group_from_a_thread_away_ends_the_process_at_home(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["exit_thread"]
    reference = native(cluster, argv)
    assert reference.returncode == 7, reference.stderr
    proc = paused(cluster, ["-L", *argv])
    try:
        for target in ("2", "3"):  # its thread blocked in a read at home, each time
            moved(cluster, proc, target)
            settled_at(cluster, proc.pid, f"node{target}")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 7), err


def test_a_checkpoint_taken_away_holds_every_thread(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["pthreads"]
    reference = native(cluster, argv)
    proc = paused(cluster, ["-L", *argv])
    try:
        moved(cluster, proc, "2")
        settled_at(cluster, proc.pid, "node2")
        done = cluster.run(
            1,
            ["migrate", str(proc.pid), "checkpoint"],
            cwd="/tmp",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, done.stderr
        image = cluster.node_path(1, f"/tmp/ckpt.{proc.pid}.1")
        assert read_head_from(str(image)).process["threads"] == 5
        proc.kill()
        proc.wait()
        recovered = cluster.run(
            1,
            ["mosrun", f"-R/tmp/ckpt.{proc.pid}.1"],
            cwd="/",
            input="x",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (recovered.stdout, recovered.returncode) == (
        reference.stdout.removeprefix("paused\n"),
        3,
    ), recovered.stderr


def test_fork_from_a_thread_away_comes_home_first(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["fork_thread"]
    reference = native(cluster, argv)
    assert reference.returncode == 4, reference.stderr
    proc = paused(cluster, ["-L", *argv])
    try:
        moved(cluster, proc, "2")
        settled_at(cluster, proc.pid, "node2")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 4), err


def test_a_signal_to_the_home_pid_ends_a_threaded_process_away(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    proc = paused(cluster, ["-L", *programs["fork_thread"]])
    try:
        moved(cluster, proc, "2")
        settled_at(cluster, proc.pid, "node2")
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out, err, proc.returncode) == ("", "", -signal.SIGTERM)
