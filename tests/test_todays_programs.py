"""Today's programs run under mosrun: threads, language runtimes and the calls they make.

Real programs, each run natively and under ``mosrun`` (the default discipline, and
-e for some): the same output, byte for byte, and the same exit status.  Writable
shared maps, locked pages and a NUMA policy are *pinned* (threads are carried)
(docs/SYSCALLS.md): they run, and the process stays home, which ``mosps -w`` and
``migrate`` say; read-only queries (capget, prctl PR_CAPBSET_READ) are carried.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent
from support.cbuild import build_c
from support.waiting import wait_until

TIMEOUT = 300
PYTHON = "/usr/bin/python3"  # the system's, which may have numpy
CPROGS = Path(__file__).resolve().parent / "cprogs"


@pytest.fixture(scope="module")
def home() -> Iterator[Agent]:
    """One node agent for the module: mosrun registers with it, mosps and migrate ask it."""
    base = Path(tempfile.mkdtemp(prefix="mosix-todays-", dir="/tmp"))
    base.chmod(0o755)
    agent = make_agent(base, slots=4)
    agent.start()
    yield agent
    cleanup(agent)
    shutil.rmtree(base, ignore_errors=True)


def same_as_native(
    home: Agent, argv: list[str], modes: tuple[str, ...] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` natively and under ``mosrun MODES``: the same stdout, stderr and status."""
    native = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=TIMEOUT)
    under = subprocess.run(
        ["mosrun", *modes, *argv], capture_output=True, cwd=cwd, env=home.env, timeout=TIMEOUT
    )
    assert under.stderr == native.stderr, under.stderr[-2000:]
    assert under.returncode == native.returncode
    assert under.stdout == native.stdout
    return under


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed")
    return path


# ------------------------------------------------------------ multi-threaded tools


@pytest.mark.parametrize("modes", [(), ("-e",)], ids=["default", "e"])
def test_sort_in_parallel(home: Agent, tmp_path: Path, modes: tuple[str, ...]) -> None:
    rng = random.Random(20240611)
    lines = [f"{rng.getrandbits(40):012x} {i}\n" for i in range(3_000_000)]
    rng.shuffle(lines)
    data = tmp_path / "lines"
    data.write_text("".join(lines))
    out = same_as_native(home, ["sort", "--parallel=2", "-S", "200M", str(data)], modes)
    assert len(out.stdout) == data.stat().st_size


@pytest.fixture(scope="module")
def twenty_mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(7)
    words = [f"w{rng.getrandbits(20):x}" for _ in range(5000)]
    path = tmp_path_factory.mktemp("compress") / "data"
    with path.open("w") as f:
        while f.tell() < 20 << 20:
            f.write(" ".join(rng.choices(words, k=1000)) + "\n")
    return path


@pytest.mark.parametrize("modes", [(), ("-e",)], ids=["default", "e"])
@pytest.mark.parametrize("tool", ["xz", "zstd"])
def test_compressors_with_two_threads(
    home: Agent, twenty_mb: Path, tool: str, modes: tuple[str, ...]
) -> None:
    need(tool)
    # blocks smaller than the file: both threads compress (one block would use one)
    argv = {
        "xz": ["xz", "-T2", "-1", "--block-size=4MiB", "-c", str(twenty_mb)],
        "zstd": ["zstd", "-T2", "-q", "-c", str(twenty_mb)],
    }[tool]
    same_as_native(home, argv, modes)


def test_ps_and_pgrep(home: Agent) -> None:
    # they read the capability bounding set (prctl PR_CAPBSET_READ) and set a NUMA policy
    same_as_native(home, ["ps", "-o", "pid=,comm=", "-p", "1"])
    same_as_native(home, ["pgrep", "-P", "0"])


# ------------------------------------------------------------ Python

PY_THREADS = """
import concurrent.futures, queue, threading
q = queue.Queue()
def worker(n):
    q.put(sum(range(n)))
threads = [threading.Thread(target=worker, args=(10**5 * (i + 1),)) for i in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(q.get() for _ in threads))
with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    print(list(pool.map(lambda x: x * x, range(10))))
lock, cond, items = threading.Lock(), threading.Condition(), []
def producer():
    for i in range(5):
        with cond:
            items.append(i)
            cond.notify()
def consumer(out):
    got = 0
    while got < 5:
        with cond:
            cond.wait_for(lambda: items)
            out.append(items.pop(0))
            got += 1
out = []
c = threading.Thread(target=consumer, args=(out,)); c.start()
producer(); c.join()
print(out)
"""

PY_POOL = """
import multiprocessing
def square(x):
    return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        print(pool.map(square, range(20)))
    print(multiprocessing.Value("i", 7).value)
"""

PY_NUMPY = """
import numpy as np
rng = np.random.default_rng(5)
a, b = rng.random((300, 300)), rng.random((300, 300))
print(round(float((a @ b).sum()), 6))
print(np.linalg.matrix_rank(a @ b.T))
"""


@pytest.mark.parametrize("modes", [(), ("-e",)], ids=["default", "e"])
@pytest.mark.parametrize("script", ["threads", "pool"])
def test_python_threads_and_processes(
    home: Agent, tmp_path: Path, script: str, modes: tuple[str, ...]
) -> None:
    path = tmp_path / f"{script}.py"
    path.write_text(PY_THREADS if script == "threads" else PY_POOL)
    same_as_native(home, [PYTHON, str(path)], modes, cwd=tmp_path)


def test_numpy_multiplies_matrices(home: Agent, tmp_path: Path) -> None:
    if subprocess.run([PYTHON, "-c", "import numpy"], capture_output=True).returncode != 0:
        pytest.skip("numpy is not installed for the system's python3")
    path = tmp_path / "numpy_test.py"
    path.write_text(PY_NUMPY)
    same_as_native(home, [PYTHON, str(path)], cwd=tmp_path)


# ------------------------------------------------------------ C with threads

C_THREADS = r"""
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t barrier;
static __thread int mine;
static long total;
static int turn;
static volatile sig_atomic_t got_usr1[4];

static void on_usr1(int sig) { (void)sig; got_usr1[mine] = 1; }

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    mine = id;
    /* threads 1 and 3 block SIGUSR1: per-thread masks */
    if (id % 2) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &s, NULL);
    }
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < 100000; i++) {
        pthread_mutex_lock(&mu);
        total += id;
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu); /* in order of id: the condition variable */
    while (turn != id)
        pthread_cond_wait(&cv, &mu);
    printf("thread %d tls %d\n", id, mine);
    fflush(stdout);
    turn++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (id == 2) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_barrier_wait(&barrier); /* main sends SIGUSR1 to thread 2 now */
    pthread_barrier_wait(&barrier);
    return NULL;
}

static void *exits(void *arg) { (void)arg; exit(7); }
static void *faults(void *arg) { (void)arg; raise(SIGTERM); pause(); return NULL; }
static void *unsupported(void *arg)
{
    (void)arg;
    errno = 0;
    long r = acct(NULL);
    printf("acct: %ld errno %d\n", r, r < 0 ? errno : 0);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    pthread_t t[4];
    if (strcmp(what, "exit") == 0 || strcmp(what, "fatal") == 0 || strcmp(what, "acct") == 0) {
        void *(*fn)(void *) = what[0] == 'e' ? exits : what[0] == 'f' ? faults : unsupported;
        if (pthread_create(&t[0], NULL, fn, NULL) != 0)
            return 2;
        pthread_join(t[0], NULL);
        printf("main goes on\n");
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_barrier_init(&barrier, NULL, 5);
    for (long i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 2;
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
    pthread_kill(t[2], SIGUSR1); /* to thread 2, whose mask lets it through */
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("total %ld usr1 %d%d%d%d\n", total, got_usr1[0], got_usr1[1], got_usr1[2], got_usr1[3]);
#ifdef _OPENMP
    long sum = 0;
#pragma omp parallel for reduction(+ : sum) num_threads(2)
    for (long i = 0; i < 10000000; i++)
        sum += i % 7;
    printf("openmp sum %ld\n", sum);
#endif
    return 3;
}
"""


@pytest.fixture(scope="module")
def c_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("cthreads")
    source = directory / "threads.c"
    source.write_text(C_THREADS)
    built: dict[str, Path] = {}
    for name, flags in (("pthread", ["-pthread"]), ("openmp", ["-pthread", "-fopenmp"])):
        out = directory / name
        result = subprocess.run(
            ["gcc", "-O2", "-Wall", *flags, "-o", str(out), str(source)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if result.returncode == 0:
            built[name] = out
        elif name == "pthread":
            pytest.fail(result.stderr)
    return built


@pytest.mark.parametrize("modes", [(), ("-e",)], ids=["default", "e"])
@pytest.mark.parametrize("kind", ["pthread", "openmp"])
def test_c_threads(
    home: Agent, c_programs: dict[str, Path], kind: str, modes: tuple[str, ...]
) -> None:
    if kind not in c_programs:
        pytest.skip("gcc -fopenmp cannot build (no libgomp)")
    out = same_as_native(home, [str(c_programs[kind])], modes)
    assert out.returncode == 3
    assert b"usr1 0010" in out.stdout


@pytest.mark.parametrize("what", ["exit", "fatal"])
def test_exit_and_a_fatal_signal_in_a_thread_end_the_process_as_natively(
    home: Agent, c_programs: dict[str, Path], what: str
) -> None:
    out = same_as_native(home, [str(c_programs["pthread"]), what])
    assert out.returncode == (7 if what == "exit" else -15)


@pytest.mark.parametrize("mode", ["-u", "-e", "-w"])
def test_an_unsupported_call_in_a_thread_gets_the_mode_for_the_whole_process(
    home: Agent, c_programs: dict[str, Path], mode: str
) -> None:
    proc = subprocess.Popen(
        ["mosrun", mode, str(c_programs["pthread"]), "acct"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=home.env,
    )
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    message = f"mosrun: pthread[{proc.pid}]: unsupported system call acct (163): ".encode()
    if mode == "-u":
        assert proc.returncode == -9
        assert stderr.startswith(message + b"killed") and stdout == b""
        return
    assert proc.returncode == 0
    assert stdout == b"acct: -1 errno 38\nmain goes on\n"
    assert stderr == (message + b"fails with ENOSYS\n" if mode == "-w" else b"")


# ------------------------------------------------------------ make, node

MAKEFILE = """
prog: a.o b.o c.o
\t$(CC) -o $@ $^
%.o: %.c
\t$(CC) -O2 -c -o $@ $<
"""


def test_make_in_parallel(home: Agent, tmp_path: Path) -> None:
    sources = {
        "a.c": "int b(void); int c(void);\n#include <stdio.h>\n"
        'int main(void) { printf("%d\\n", b() + c()); return 4; }\n',
        "b.c": "int b(void) { return 40; }\n",
        "c.c": "int c(void) { return 2; }\n",
    }
    results = []
    for where, modes in (("native", ()), ("mosrun", ())):
        project = tmp_path / where
        project.mkdir()
        (project / "Makefile").write_text(MAKEFILE)
        for name, text in sources.items():
            (project / name).write_text(text)
        argv = ["make", "-s", "-j2"]
        if where == "mosrun":
            argv = ["mosrun", *modes, *argv]
        built = subprocess.run(
            argv, cwd=project, capture_output=True, env=home.env, timeout=TIMEOUT
        )
        assert built.returncode == 0 and built.stderr == b"", built.stderr
        ran = subprocess.run([str(project / "prog")], capture_output=True, timeout=TIMEOUT)
        results.append((built.stdout, ran.stdout, ran.returncode))
    assert results[0] == results[1] == (b"", b"42\n", 4)


@pytest.mark.parametrize("modes", [(), ("-e",)], ids=["default", "e"])
def test_node_starts_a_worker_thread(home: Agent, modes: tuple[str, ...]) -> None:
    node = need("node")
    script = (
        "const {Worker} = require('worker_threads');"
        "const w = new Worker('require(\"worker_threads\").parentPort.postMessage(6*7)',"
        " {eval: true});"
        "w.on('message', m => console.log('worker says', m));"
        "w.on('exit', c => console.log('worker exit', c));"
    )
    out = same_as_native(home, [node, "-e", script], modes)
    assert out.stdout == b"worker says 42\nworker exit 0\n"


# ------------------------------------------------------------ pinned home

PY_WAITER = """
import sys, threading
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(2)]
for t in threads: t.start()
print("threads", flush=True)
sys.stdin.readline()
stop.set()
for t in threads: t.join()
print("joined", flush=True)
sys.stdin.readline()
"""


def why_here(home: Agent, pid: int) -> str:
    """The ``why here`` of ``pid`` in ``mosps -w`` ("": listed without one; None: not listed)."""
    listing = home.run("mosps", "-w")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.split() and line.split()[0] == str(pid):
            after = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return after.removeprefix("why here: ") if after.startswith("why here:") else ""
    return "not listed"


def test_a_threaded_process_is_not_pinned_and_is_checkpointed(home: Agent, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    proc = subprocess.Popen(
        ["mosrun", f"-C{tmp_path / 'ckpt'}", sys.executable, "-c", PY_WAITER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "threads\n"
        wait_until(lambda: why_here(home, proc.pid) != "not listed", what="mosps lists it")
        # its threads move with it (tests/test_threads_away.py): nothing pins it
        assert why_here(home, proc.pid) == ""
        # it is checkpointed with its threads (tests/test_thread_checkpoint.py recovers)
        saved = home.run("migrate", str(proc.pid), "checkpoint")
        assert saved.returncode == 0, saved.stderr
        assert saved.stdout == f"{proc.pid}: checkpoint 1 written to {tmp_path / 'ckpt.1'}\n"
        assert [p.name for p in tmp_path.iterdir()] == ["ckpt.1"]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "joined\n"
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------ watching itself


@pytest.fixture(scope="module")
def selfwatch(tmp_path_factory: pytest.TempPathFactory) -> str:
    built = tmp_path_factory.mktemp("selfwatch") / "selfwatch"
    build_c(CPROGS / "selfwatch.c", built, "-O1", "-pthread")
    return str(built)


@pytest.mark.parametrize("modes", [(), ("-e",)], ids=["default", "e"])
def test_a_program_that_watches_itself_runs_and_stays_while_it_does(
    home: Agent, selfwatch: str, modes: tuple[str, ...]
) -> None:
    """perf_event_open of its own task clock and a userfaultfd serving its own pages (a
    thread fills them) run as natively; while either is open the process stays home,
    which mosps -w says; closed, nothing keeps it."""
    native = subprocess.run([selfwatch], input="\n\n", capture_output=True, text=True)
    assert (native.returncode, native.stdout, native.stderr) == (
        0,
        "perf ok\nuffd ok\nholding\nreleased\n",
        "",
    )
    proc = subprocess.Popen(
        ["mosrun", *modes, selfwatch],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=home.env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        assert [proc.stdout.readline() for _ in range(3)] == ["perf ok\n", "uffd ok\n", "holding\n"]
        wait_until(lambda: why_here(home, proc.pid) != "not listed", what="mosps lists it")
        assert why_here(home, proc.pid) in (
            "it counts its own events on this node (a perf_event is open)",
            "it serves its own page faults (a userfaultfd is open)",
        )
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "released\n"
        assert why_here(home, proc.pid) == ""
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
