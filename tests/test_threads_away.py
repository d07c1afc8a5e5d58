"""Multi-threaded processes migrate (issue 16, stage 1: threads move; stage 2: home
serves them at once).

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
pid ends a threaded process away.  Stage 2: one thread blocked reading the home
stdin holds none of the others' forwarded writes (each thread's call takes a
direct channel of its own, served by a deputy thread of its own).
"""

from __future__ import annotations

import contextlib
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


READER_AND_WRITERS = r"""
/* One thread reads a line from the home stdin while three others compute and
 * append numbered lines (0, 1, 2, ...) to home files PREFIX.1..3 until the
 * line has come; then it says what it read and main how many writers ended. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static const char *prefix;
static volatile int line_came;

static void *writer(void *arg)
{
    char path[512], text[32];
    snprintf(path, sizeof(path), "%s.%ld", prefix, (long)arg);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0)
        return NULL;
    volatile unsigned long sum = 0;
    for (long i = 0; !line_came && i < 10000000; i++) {
        for (unsigned long k = 0; k < 200000; k++) /* compute where it runs */
            sum += k ^ (unsigned long)i;
        int n = snprintf(text, sizeof(text), "%ld\n", i);
        if (write(fd, text, (size_t)n) != n)
            return NULL;
    }
    close(fd);
    return (void *)1;
}

static void *reader(void *arg)
{
    (void)arg;
    char line[128];
    ssize_t n = read(0, line, sizeof(line) - 1);
    if (n <= 0)
        return NULL;
    line[n] = 0;
    printf("reader got %s", line);
    fflush(stdout);
    line_came = 1;
    return (void *)1;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    prefix = argv[1];
    pthread_t r, w[3];
    printf("paused\n");
    fflush(stdout);
    if (pthread_create(&r, NULL, reader, NULL) != 0)
        return 1;
    for (long k = 0; k < 3; k++)
        if (pthread_create(&w[k], NULL, writer, (void *)(k + 1)) != 0)
            return 1;
    int ended = 0;
    void *ok;
    for (int k = 0; k < 3; k++)
        if (pthread_join(w[k], &ok) == 0 && ok)
            ended++;
    if (pthread_join(r, &ok) != 0 || !ok)
        return 1;
    printf("%d writers ended\n", ended);
    return 0;
}
"""


DROP_AND_OPEN = r"""
/* Run as root: main reads a line from the home stdin (it is moved meanwhile);
 * then, while four threads call home at once (getppid), main gives up root for
 * uid and gid 65534 (raw system calls: glibc's wrappers signal every thread,
 * which away does not work yet) and opens PATH (root's, mode 0600) 300 times.
 * It says how many opens worked: none natively; none away, where home serves
 * its calls from whichever deputy thread is free (each must have its ids). */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int done;

static void *caller(void *arg)
{
    (void)arg;
    while (!done)
        (void)getppid();
    return NULL;
}

int main(int argc, char **argv)
{
    char c;
    if (argc != 2)
        return 2;
    printf("paused\n");
    fflush(stdout);
    if (read(0, &c, 1) != 1)
        return 3;
    pthread_t t[4];
    for (int k = 0; k < 4; k++)
        if (pthread_create(&t[k], NULL, caller, NULL) != 0)
            return 1;
    usleep(100000);
    if (syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
        syscall(SYS_setresuid, 65534, 65534, 65534) != 0)
        return 4;
    long opened = 0;
    for (int i = 0; i < 300; i++) {
        int fd = open(argv[1], O_RDONLY);
        if (fd >= 0) {
            opened++;
            close(fd);
        }
    }
    done = 1;
    for (int k = 0; k < 4; k++)
        if (pthread_join(t[k], NULL) != 0)
            return 1;
    printf("opened %ld as %ld\n", opened, (long)syscall(SYS_geteuid));
    return 0;
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
    concurrent = Path("/var/tmp") / f"mosix-reader-writers-{__name__}.c"
    concurrent.write_text(READER_AND_WRITERS)
    dropper = Path("/var/tmp") / f"mosix-drop-open-{__name__}.c"
    dropper.write_text(DROP_AND_OPEN)
    builds = {
        "pthreads": ["-O2", "-pthread", "thread_ckpt.c"],
        "exit_thread": ["-O2", "-pthread", str(source)],
        "fork_thread": ["-O2", "-pthread", str(forker)],
        "reader_writers": ["-O2", "-pthread", str(concurrent)],
        "drop_and_open": ["-O2", "-pthread", str(dropper)],
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
                "reader_writers": [str(directory / "reader_writers")],
                "drop_and_open": [str(directory / "drop_and_open")],
            }
    finally:
        source.unlink(missing_ok=True)
        forker.unlink(missing_ok=True)
        concurrent.unlink(missing_ok=True)
        dropper.unlink(missing_ok=True)


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


@contextlib.contextmanager
def killed_if_left(proc: subprocess.Popen[str]) -> Iterator[None]:
    """A test that fails leaves no process behind."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
    with killed_if_left(proc):
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
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 3), err


def test_a_threaded_program_starts_away(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["pthreads"]
    reference = native(cluster, argv)
    proc = paused(cluster, ["-rnode2", *argv])
    with killed_if_left(proc):
        settled_at(cluster, proc.pid, "node2")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    # pthread_kill away: the thread is signalled where it runs (mosix_remote.c)
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 3), err


def test_exit_group_from_a_thread_away_ends_the_process_at_home(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["exit_thread"]
    reference = native(cluster, argv)
    assert reference.returncode == 7, reference.stderr
    proc = paused(cluster, ["-L", *argv])
    with killed_if_left(proc):
        for target in ("2", "3"):  # its thread blocked in a read at home, each time
            moved(cluster, proc, target)
            settled_at(cluster, proc.pid, f"node{target}")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 7), err


def test_a_checkpoint_taken_away_holds_every_thread(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    argv = programs["pthreads"]
    reference = native(cluster, argv)
    proc = paused(cluster, ["-L", *argv])
    with killed_if_left(proc):
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
    with killed_if_left(proc):
        moved(cluster, proc, "2")
        settled_at(cluster, proc.pid, "node2")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    assert ("paused\n" + out, proc.returncode) == (reference.stdout, 4), err


def test_a_signal_to_the_home_pid_ends_a_threaded_process_away(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    proc = paused(cluster, ["-L", *programs["fork_thread"]])
    with killed_if_left(proc):
        moved(cluster, proc, "2")
        settled_at(cluster, proc.pid, "node2")
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    assert (out, err, proc.returncode) == ("", "", -signal.SIGTERM)


def some_thread_reads_stdin(pid: int) -> bool:
    """Whether a thread of ``pid`` (at home: the deputy serving a forwarded call) is in
    read(0, ...) now (/proc/PID/task/TID/syscall: the number, then the arguments)."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            words = (task / "syscall").read_text().split()
        except OSError:
            continue
        if words[:2] == ["0", "0x0"]:
            return True
    return False


def lines_of(files: list[Path]) -> list[int]:
    return [len(path.read_text().splitlines()) if path.exists() else 0 for path in files]


def writes_go_on(files: list[Path], what: str) -> None:
    """Every writer's file grows by a few lines within a deadline (a writer held
    behind the blocked read fails the test here instead of hanging it)."""
    before = lines_of(files)
    wait_until(
        lambda: all(now >= then + 3 for now, then in zip(lines_of(files), before, strict=True)),
        30.0,
        what=f"the writers' lines growing {what} (from {before})",
    )


def test_a_thread_blocked_reading_at_home_holds_no_other_thread(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    prefix = f"/tmp/mosix-reader-writers-{os.getpid()}"
    files = [cluster.node_path(1, f"{prefix}.{k}") for k in (1, 2, 3)]
    proc = paused(cluster, ["-L", *programs["reader_writers"], prefix])
    with killed_if_left(proc):
        for target in ("2", "3"):  # moved while its reader is blocked at home
            wait_until(lambda: some_thread_reads_stdin(proc.pid), TIMEOUT, what="the read")
            moved(cluster, proc, target)
            settled_at(cluster, proc.pid, f"node{target}")
            wait_until(lambda: some_thread_reads_stdin(proc.pid), TIMEOUT, what="the read")
            writes_go_on(files, f"at node {target}, stdin open and its reader blocked")
        assert proc.poll() is None
        out, err = proc.communicate("a line typed later\n", timeout=TIMEOUT)
        expected = "reader got a line typed later\n3 writers ended\n"
        assert (out, proc.returncode) == (expected, 0), err
        for path in files:  # every line once, in order: no call lost or made twice
            lines = path.read_text().splitlines()
            assert lines and lines == [str(i) for i in range(len(lines))], path
        for path in files:
            path.unlink(missing_ok=True)


def test_ids_given_up_by_one_thread_away_hold_for_every_thread_at_home(
    cluster: LocalCluster, programs: dict[str, list[str]]
) -> None:
    secret = cluster.node_path(1, f"/tmp/mosix-secret-{os.getpid()}")
    secret.write_text("root's\n")
    secret.chmod(0o600)
    try:
        argv = [*programs["drop_and_open"], f"/tmp/{secret.name}"]
        reference = native(cluster, argv)
        assert (reference.returncode, reference.stdout) == (0, "paused\nopened 0 as 65534\n")
        proc = paused(cluster, ["-L", *argv])
        with killed_if_left(proc):
            moved(cluster, proc, "2")
            settled_at(cluster, proc.pid, "node2")
            out, err = proc.communicate("x", timeout=TIMEOUT)
        assert (proc.returncode, out) == (0, "opened 0 as 65534\n"), err
    finally:
        secret.unlink(missing_ok=True)
