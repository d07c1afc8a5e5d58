"""Multi-threaded programs away from home (issue 16's "Done when"), in real test clusters.

- ``sort --parallel=2`` of 3,000,000 lines and ``xz -T2``, each started at node 1
  under ``mosrun -L``, fed its input through the home stdin a quarter at a time and
  moved to node 2, node 3 and home between quarters (so each move is in the middle
  of its run, with its input half read): output byte-identical to a native run, and
  the native exit status.
- ``-b`` starts a threaded program away when node 1 is loaded.
- The balancer spreads four threaded CPU-bound programs started on one node.
- A checkpoint taken away, then the node is lost: the process resumes at home from
  the checkpoint with all its threads and ends with exact output.
- SIGTSTP (and ``migrate PID chkstop``) of a threaded process away stops every
  thread of its copy; SIGCONT continues them all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.clusters import bring_up, moved, node_programs, registered_where
from support.waiting import wait_until
from test_balancing import where_they_run
from test_job_control_away import Child, stop_seen
from test_migration_faults import LOST_AFTER, LOST_LINE, copy_pid
from test_threads_away import paused, settled_at, threads_of

from mosix.ckpt.image import read_head_from
from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

TIMEOUT = 120.0
SPREAD_WAIT = 60.0
LINES = 3_000_000
QUARTERS = 4

THREADED_BURN = r"""
/* Two threads compute until the standard input ends, then it prints how much
 * they computed and exits 0.  Main blocks reading stdin; with an argument it
 * computes too, looking at stdin without blocking between bursts (as burn.c). */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int done;
static unsigned long rounds[2];

static void *burn(void *arg)
{
    unsigned long *mine = arg;
    while (!atomic_load(&done)) {
        volatile unsigned long x = 0;
        for (unsigned long i = 0; i < 20000000UL; i++)
            x += i;
        (*mine)++;
    }
    return NULL;
}

static int stdin_ended(int polling)
{
    char buf[64];
    if (polling) {
        volatile unsigned long x = 0;
        for (unsigned long i = 0; i < 20000000UL; i++)
            x += i;
        struct pollfd p = {.fd = 0, .events = POLLIN};
        int ready = poll(&p, 1, 0);
        if (ready < 0)
            return -1;
        if (ready == 0)
            return 0;
    }
    ssize_t n = read(0, buf, sizeof buf);
    return n < 0 ? -1 : n == 0;
}

int main(int argc, char **argv)
{
    (void)argv;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, burn, &rounds[i]) != 0)
            return 1;
    printf("ready\n");
    fflush(stdout);
    int ended;
    while ((ended = stdin_ended(argc > 1)) == 0)
        ;
    if (ended < 0)
        return 2;
    atomic_store(&done, 1);
    for (int i = 0; i < 2; i++)
        if (pthread_join(t[i], NULL) != 0)
            return 3;
    printf("burnt %lu rounds\n", rounds[0] + rounds[1]);
    return 0;
}
"""

BURNT = r"burnt \d+ rounds\n"

WRITERS = r"""
/* Main writes 1 in every page of two areas of 64 MiB, then two threads each
 * write every page of one area once more, in order, at a steady pace (a few
 * seconds in all): its number + 2.  Main says "ready", reads the standard input
 * to its end, waits for the writers and looks at every page: "intact", or the
 * first page that lost its second write. */
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 16384UL
#define PAGE 4096UL

static unsigned long *area[2];

static void *write_once(void *arg)
{
    unsigned long *base = arg;
    for (unsigned long i = 0; i < PAGES; i++) {
        volatile unsigned long pace = 0;
        for (unsigned long k = 0; k < 100000UL; k++)
            pace += k;
        base[i * (PAGE / sizeof(long))] = i + 2;
    }
    return NULL;
}

int main(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        area[i] = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (area[i] == MAP_FAILED)
            return 2;
        for (unsigned long p = 0; p < PAGES; p++)
            area[i][p * (PAGE / sizeof(long))] = 1;
    }
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, write_once, area[i]) != 0)
            return 2;
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0)
        ;
    for (int i = 0; i < 2; i++)
        if (pthread_join(t[i], NULL) != 0)
            return 2;
    for (int i = 0; i < 2; i++)
        for (unsigned long p = 0; p < PAGES; p++)
            if (area[i][p * (PAGE / sizeof(long))] != p + 2) {
                printf("thread %d: page %lu lost its write\n", i, p);
                return 1;
            }
    printf("intact\n");
    return n < 0 ? 2 : 0;
}
"""

MakeCluster = Callable[..., LocalCluster]


@pytest.fixture(scope="module")
def cluster(namespaces: None) -> Iterator[LocalCluster]:
    """Three nodes, no automatic balancing: the tests' moves are the only ones."""
    made = bring_up(3, cluster=ClusterSettings(balance_interval=0))
    try:
        yield made
    finally:
        made.down()


@pytest.fixture(scope="module")
def programs() -> Iterator[Path]:
    """The threaded burner, thread_ckpt.c, and the input of sort and xz (one number a
    line, in no order: a pseudo-random sequence), where every node sees them."""
    source = Path("/var/tmp") / f"mosix-tburn-{os.getpid()}.c"
    source.write_text(THREADED_BURN)
    writers = Path("/var/tmp") / f"mosix-twrite-{os.getpid()}.c"
    writers.write_text(WRITERS)
    builds = {
        "tburn": ["-O0", "-pthread", str(source)],
        "pthreads": ["-O2", "-pthread", "thread_ckpt.c"],
        "writers": ["-O2", "-pthread", str(writers)],
    }
    try:
        with node_programs("threadprogs", builds) as directory:
            directory.chmod(0o755)
            x, lines = 12345, []
            for _ in range(LINES):
                x = (x * 1103515245 + 12345) % 2**31
                lines.append(f"{x:08x}\n")
            (directory / "input").write_text("".join(lines))
            yield directory
    finally:
        source.unlink(missing_ok=True)
        writers.unlink(missing_ok=True)


def feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    """Write ``data`` to its stdin (it reads it wherever it runs); fails, rather than
    hanging, if the program stops reading."""
    stdin = proc.stdin
    assert stdin is not None

    def write() -> None:
        stdin.write(data)
        stdin.flush()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(TIMEOUT)
    assert not writer.is_alive(), f"process {proc.pid} stopped reading its input"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["sort", "--parallel=2", "-S", "8M"], id="sort"),
        pytest.param(["xz", "-T2", "-3", "--block-size=1MiB", "-c"], id="xz"),
    ],
)
def test_a_threaded_tool_moves_on_and_home_mid_run(
    cluster: LocalCluster, programs: Path, argv: list[str]
) -> None:
    data = (programs / "input").read_bytes()
    native_out = programs / f"native.{argv[0]}"
    moved_out = programs / f"moved.{argv[0]}"
    with (programs / "input").open("rb") as given, native_out.open("wb") as out:
        reference = cluster.run(
            1, argv, cwd="/tmp", stdin=given, stdout=out, stderr=subprocess.PIPE, timeout=TIMEOUT
        )
    assert reference.returncode == 0, reference.stderr
    quarter = len(data) // QUARTERS
    pieces = [data[i * quarter : (i + 1) * quarter] for i in range(QUARTERS - 1)]
    pieces.append(data[(QUARTERS - 1) * quarter :])
    with moved_out.open("wb") as out:
        proc: subprocess.Popen[bytes] = cluster.popen(
            1,
            ["mosrun", "-L", *argv],
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.PIPE,
        )
    try:
        feed(proc, pieces[0])
        if argv[0] == "xz":  # its two compressing threads are there before it moves
            wait_until(lambda: threads_of(proc.pid) >= 3, TIMEOUT, what="xz's worker threads")
        for target, piece in zip(("2", "3", "home"), pieces[1:], strict=True):
            moved(cluster, proc, target)  # type: ignore[arg-type]
            settled_at(cluster, proc.pid, "home" if target == "home" else f"node{target}")
            assert proc.poll() is None, "it ended before it had all its input"
            feed(proc, piece)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(TIMEOUT)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == reference.returncode == 0, err
    # xz: a valid stream of the same data, but with other bytes, was a live move's lost
    # writes in its compressor's state (test_a_live_move_carries_every_page_...)
    assert moved_out.read_bytes() == native_out.read_bytes()


def test_a_live_move_carries_every_page_threads_write_meanwhile(
    cluster: LocalCluster, programs: Path
) -> None:
    """Moved live (pre-copy rounds while it runs), a program whose two threads write
    every page once more, one after another: every page arrives as last written.  A
    round used to hold only the main thread between its look at the pages written
    and its copy: a page another thread wrote again in between was never sent again
    (so xz -T2 moved wrote a valid stream of other bytes: one block encoded from
    compressor state that had lost writes)."""
    for _ in range(2):
        proc = cluster.popen(
            1,
            ["mosrun", "-L", str(programs / "writers")],
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            moved(cluster, proc, "2")  # type: ignore[arg-type]
            settled_at(cluster, proc.pid, "node2")
            out, err = proc.communicate("", timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert (proc.returncode, out, err) == (0, "intact\n", "")


def test_best_node_starts_a_threaded_program_away(cluster: LocalCluster, programs: Path) -> None:
    hogs = [cluster.popen(1, ["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        wait_until(lambda: loaded(cluster), TIMEOUT, what="node 1's load report")
        proc = cluster.popen(
            1,
            ["mosrun", "-b", str(programs / "tburn")],
            cwd="/tmp",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n", proc.communicate(timeout=TIMEOUT)
            wait_until(
                lambda: registered_where(cluster, proc.pid) in ("node2", "node3"),
                TIMEOUT,
                what="the threaded program away",
            )
            placed = re.findall(
                rf"process {proc.pid} migrated to node (\d+)", cluster.agent_log(1).read_text()
            )
            assert placed and placed[0] in ("2", "3"), placed
            out, err = proc.communicate("", timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert proc.returncode == 0, err
    assert re.fullmatch(BURNT, out), out


def loaded(cluster: LocalCluster) -> bool:
    """Whether node 1's agent reports its own load as at least 2 (mosctl rstatus)."""
    listing = cluster.run(1, ["mosctl", "rstatus"], capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0, listing.stderr
    for line in listing.stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == "1":
            return float(fields[7]) >= 2
    return False


@pytest.mark.slow
def test_the_balancer_spreads_threaded_programs(make_cluster: MakeCluster, programs: Path) -> None:
    spread = make_cluster(3, cpus=0.6)  # automatic balancing on (the default interval)
    jobs = [
        spread.popen(
            1,
            ["mosrun", str(programs / "tburn")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    pids = [job.pid for job in jobs]
    try:

        def spread_out() -> bool:
            where = where_they_run(spread, pids)
            return where["node2"] >= 1 and where["node3"] >= 1 and where["gone"] == 0

        try:
            wait_until(spread_out, SPREAD_WAIT, what="threaded jobs on nodes 2 and 3", period=0.5)
        except AssertionError:
            log = spread.agent_log(1).read_text().splitlines()
            raise AssertionError(
                f"{where_they_run(spread, pids)}; node 1's log ends:\n" + "\n".join(log[-25:])
            ) from None
        assert where_they_run(spread, pids)["home"] <= 2
    finally:
        results = [job.communicate("", timeout=TIMEOUT) for job in jobs]
    for job, (stdout, stderr) in zip(jobs, results, strict=True):
        assert job.returncode == 0, stderr
        assert re.fullmatch("ready\n" + BURNT, stdout), stdout


def test_checkpoint_away_then_node_lost_resumes_home_with_all_threads(
    make_cluster: MakeCluster, programs: Path
) -> None:
    lossy = make_cluster(2, cluster=ClusterSettings(lost_after=LOST_AFTER, balance_interval=0))
    argv = [str(programs / "pthreads")]
    reference = lossy.run(1, argv, input="x", capture_output=True, text=True, timeout=TIMEOUT)
    assert reference.returncode == 3, reference.stderr
    proc = paused(lossy, ["-C/tmp/ck", "-L", *argv])
    try:
        moved(lossy, proc, "2")
        settled_at(lossy, proc.pid, "node2")
        moved(lossy, proc, "checkpoint")
        image = lossy.node_path(1, "/tmp/ck.1")
        assert read_head_from(str(image)).process["threads"] == 5
        lossy.kill_node(2)
        resumed = f"process {proc.pid} resumes at home from /tmp/ck.1"
        wait_until(
            lambda: resumed in lossy.agent_log(1).read_text(), TIMEOUT, what="resumed at home"
        )
        wait_until(lambda: threads_of(proc.pid) == 5, TIMEOUT, what="its five threads at home")
        out, err = proc.communicate("x", timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    errors = err.splitlines()
    assert len(errors) == 1 and LOST_LINE.match(errors[0]), err
    assert errors[0].endswith("; it resumes at home from /tmp/ck.1"), err
    assert "paused\n" + out == reference.stdout


def task_states(pid: int) -> list[str]:
    """The state letter of every thread of process ``pid`` (anywhere: one pid namespace)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return states


@pytest.mark.parametrize("how", ["SIGTSTP", "chkstop"])
def test_a_stop_away_stops_every_thread_and_sigcont_continues_them(
    cluster: LocalCluster, programs: Path, how: str
) -> None:
    # its main thread computes too: one blocked in a forwarded read of the home stdin
    # makes the stop or the continuation go unseen now and then (see the report)
    argv = ["mosrun", "-rnode2", "-C/tmp/tstop", str(programs / "tburn"), "polling"]
    prog = Child(cluster, argv)
    try:
        assert prog.line() == "ready"
        copy = copy_pid(cluster, 2, prog.pid)
        wait_until(lambda: len(task_states(copy)) == 3, TIMEOUT, what="three threads on node 2")
        if how == "SIGTSTP":
            os.kill(prog.pid, signal.SIGTSTP)
            expected = signal.SIGTSTP
        else:
            done = cluster.run(
                1, ["migrate", str(prog.pid), "chkstop"], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            expected = signal.SIGSTOP
        assert stop_seen(prog.pid) == expected
        wait_until(
            lambda: set(task_states(copy)) == {"T"}, TIMEOUT, what="every thread of the copy stops"
        )
        cpu = copy_cpu(copy)
        os.kill(prog.pid, signal.SIGCONT)
        wait_until(
            lambda: "T" not in task_states(copy), TIMEOUT, what="every thread of the copy continues"
        )
        wait_until(lambda: copy_cpu(copy) > cpu, TIMEOUT, what="the copy computes again")
        assert prog.proc.stdin is not None
        prog.proc.stdin.close()
        lines, stderr, status = prog.finish()
    finally:
        if prog.proc.poll() is None:
            prog.proc.kill()
            prog.proc.wait()
    assert (status, stderr) == (0, "")
    assert re.fullmatch(BURNT, lines[-1] + "\n"), lines


def copy_cpu(pid: int) -> int:
    """utime + stime of process ``pid``, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


ATTEMPTS = 8  # programs, each stopped and continued once
CYCLE_WAIT = 10.0  # a stop or a continuation comes within a second when it comes


def test_stop_and_continue_with_a_thread_blocked_in_a_forwarded_read(
    cluster: LocalCluster, programs: Path
) -> None:
    for _ in range(ATTEMPTS):
        stop_and_continue_blocked_reader(cluster, programs)


def stop_and_continue_blocked_reader(cluster: LocalCluster, programs: Path) -> None:
    prog = Child(cluster, ["mosrun", "-rnode2", str(programs / "tburn")])
    try:
        assert prog.line() == "ready"
        copy = copy_pid(cluster, 2, prog.pid)
        wait_until(lambda: len(task_states(copy)) == 3, TIMEOUT, what="three threads on node 2")
        os.kill(prog.pid, signal.SIGTSTP)
        wait_until(lambda: set(task_states(copy)) == {"T"}, CYCLE_WAIT, what="every thread stops")
        assert stop_seen(prog.pid) == signal.SIGTSTP
        os.kill(prog.pid, signal.SIGCONT)
        wait_until(lambda: "T" not in task_states(copy), CYCLE_WAIT, what="every thread continues")
        assert prog.proc.stdin is not None
        prog.proc.stdin.close()
        lines, stderr, status = prog.finish()
    finally:
        if prog.proc.poll() is None:
            prog.proc.kill()
            prog.proc.wait()
    assert (status, stderr) == (0, "")
    assert re.fullmatch(BURNT, lines[-1] + "\n"), lines
