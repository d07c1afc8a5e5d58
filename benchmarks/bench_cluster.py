"""Forwarded system calls and migration in a test cluster, baselines measured in the same run.

    python3 benchmarks/bench_cluster.py [--quick] [--runs 3] [--mib 10,100,1024] [--name bench]

Brings up two 2-node test clusters (mosix.testcluster.LocalCluster, named ``--name``
and ``--name``fast, the first with ``[cluster] fast_path = false``, the second with
``true``, the default; root) and measures:

* forwarding: ``cprogs/fwd_calls.c`` does 64-byte write()s and read()s of a
  regular file in the home node's /tmp, and open()+close() pairs of it, timing
  itself with the vDSO clock: (a) natively on node 1, (b) under ``mosrun`` on
  node 1 (the discipline's floor), (c) started with ``mosrun -L -rnode2``: it runs
  on node 2 and every call is forwarded to its deputy on node 1 through the copy's
  supervisor (user notification), (d) the same in the fast-path cluster: the
  copy's preload shim forwards them itself.  (-L: the balancer would bring this
  I/O-bound program home.)  The baseline is
  ``cprogs/fwd_echo.c``: the same request and reply frames (built by the real
  marshaller) echoed over TCP (TCP_NODELAY) from node 2 to node 1 by a bare C
  client and server, nothing trapped or executed.  Target: forwarded <= 1.3x the
  bare round trip (+ the native call).
* where the forwarded call's time goes: ``perf trace`` of a short forwarded run
  (the copy, mosix-remote and the deputy; one machine, one clock), split at the
  system calls each side makes (see ``breakdown``).
* migration: ``cprogs/migmem.c`` with ``--mib`` MiB resident (incompressible),
  started under mosrun on node 1 and moved with ``migrate PID node2`` while it
  runs: the time from the request to the agent's answer, and the downtime (the
  longest gap in the program's own progress loop, checked to start during the
  migration), against the image size / ``LocalCluster.bandwidth(1, 2)`` measured
  in the same run.

Each forwarding number is the best over ``--runs`` runs of the best round inside a
run (the machine is shared: the best is the least disturbed); the medians are
printed too.  ``--quick``: one run, fewer calls, 10 and 100 MiB only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import fwd_trace

from mosix.testcluster import LocalCluster
from mosix.testcluster.agents import ClusterSettings

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent / "csrc"
CFLAGS = ["gcc", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]
HOME, AWAY = 1, 2
CALLS = ("write", "read", "openclose")
TIMEOUT = 600


@dataclass(frozen=True)
class Programs:
    calls: str
    echo: str
    migmem: str
    traps: str


def build(directory: Path) -> Programs:
    """The C helpers, where every node sees them (not /tmp: each node has its own)."""
    cprogs = HERE / "cprogs"
    names = ("fwd_calls", "fwd_echo", "migmem", "trap_costs")
    progs = Programs(*(str(directory / name) for name in names))
    for name in ("fwd_calls", "migmem"):
        subprocess.run([*CFLAGS, "-o", directory / name, cprogs / f"{name}.c"], check=True)
    includes = [arg for d in ("common", "forward", "generated") for arg in ("-I", CSRC / d)]
    channel = CSRC / "common" / "forward_channel.c"
    trap_sources = [cprogs / "trap_costs.c", channel]
    subprocess.run([*CFLAGS, *includes, "-o", progs.traps, *trap_sources], check=True)
    parts = ("forward_marshal", "forward_request", "forward_memory_vm", "forward_execute")
    marshaller = [CSRC / "forward" / f"{part}.c" for part in parts]
    echo_sources = [cprogs / "fwd_echo.c", *marshaller, channel]
    subprocess.run([*CFLAGS, *includes, "-o", progs.echo, *echo_sources], check=True)
    return progs


# ------------------------------------------------------------------ forwarding

Timings = dict[str, tuple[float, float]]  # call -> (best, median) ns per call


def parse_timings(text: str) -> tuple[Timings, dict[str, tuple[int, int]]]:
    """fwd_calls/fwd_echo output: "NAME BEST MEDIAN" and "size NAME REQ REP" lines."""
    times: Timings = {}
    sizes: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "size":
            sizes[words[1]] = (int(words[2]), int(words[3]))
        elif len(words) == 3:
            times[words[0]] = (float(words[1]), float(words[2]))
    return times, sizes


def checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        sys.exit(f"bench_cluster: {what} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def run_calls(cluster: LocalCluster, prefix: list[str], prog: str, n: int, rounds: int) -> Timings:
    out = checked(
        cluster.run(
            HOME,
            [*prefix, prog, "/tmp/fwd_calls.dat", str(n), str(rounds)],
            cwd="/tmp",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        ),
        " ".join([*prefix, "fwd_calls"]),
    )
    times, _ = parse_timings(out)
    if set(times) != set(CALLS):
        sys.exit(f"bench_cluster: fwd_calls printed {out!r}")
    return times


def run_echo(
    cluster: LocalCluster, prog: str, n: int, rounds: int
) -> tuple[Timings, dict[str, tuple[int, int]]]:
    """The bare round trips: client on node 2, server on node 1."""
    server = cluster.popen(
        HOME, [prog, "serve", cluster.address(HOME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port.isdigit():
            sys.exit("bench_cluster: the echo server did not start")
        argv = [prog, "client", cluster.address(HOME), port, "/tmp/fwd_echo.dat"]
        out = checked(
            cluster.run(
                AWAY, [*argv, str(n), str(rounds)], capture_output=True, text=True, timeout=TIMEOUT
            ),
            "fwd_echo client",
        )
        server.wait(timeout=TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    times, sizes = parse_timings(out)
    # open+close is two round trips
    times["openclose"] = (
        times["open"][0] + times["close"][0],
        times["open"][1] + times["close"][1],
    )
    return times, sizes


def best_of(runs: list[Timings]) -> Timings:
    return {
        call: (min(r[call][0] for r in runs), sorted(r[call][1] for r in runs)[len(runs) // 2])
        for call in runs[0]
    }


@dataclass
class Forwarding:
    native: Timings
    disciplined: Timings
    forwarded: Timings
    fast: Timings
    bare: Timings
    sizes: dict[str, tuple[int, int]]


def forwarding(
    cluster: LocalCluster, fast_cluster: LocalCluster, progs: Programs, runs: int, quick: bool
) -> Forwarding:
    """``fast_cluster``: the same, its agents with [cluster] fast_path = true."""
    n_native, n_remote, rounds = (20000, 500, 3) if quick else (100000, 2000, 5)
    native, disciplined, forwarded, fast, bare = [], [], [], [], []
    sizes: dict[str, tuple[int, int]] = {}
    away = ["mosrun", "-L", f"-r{node_name(AWAY)}"]  # -L: the balancer would pull it home
    for _ in range(runs):  # interleaved: a disturbance hits all of one run alike
        native.append(run_calls(cluster, [], progs.calls, n_native, rounds))
        disciplined.append(run_calls(cluster, ["mosrun"], progs.calls, n_native, rounds))
        forwarded.append(run_calls(cluster, away, progs.calls, n_remote, rounds))
        fast.append(run_calls(fast_cluster, away, progs.calls, n_remote, rounds))
        echo, sizes = run_echo(cluster, progs.echo, n_remote, rounds)
        bare.append(echo)
    check_forwarded(cluster)
    check_forwarded(fast_cluster)
    return Forwarding(
        best_of(native),
        best_of(disciplined),
        best_of(forwarded),
        best_of(fast),
        best_of(bare),
        sizes,
    )


def node_name(k: int) -> str:
    return f"node{k}"


def check_forwarded(cluster: LocalCluster) -> None:
    """The forwarded runs did run on node 2, and their file is node 1's."""
    if "migrated to node 2" not in cluster.agent_log(HOME).read_text():
        sys.exit("bench_cluster: mosrun -rnode2 did not migrate (see node 1's agent log)")
    if cluster.node_path(AWAY, "/tmp/fwd_calls.dat").exists():
        sys.exit("bench_cluster: the forwarded program's file is on node 2")


def forwarding_rows(f: Forwarding) -> list[tuple[str, ...]]:
    rows = []
    for call, label in (
        ("write", "write(64 B) to a home file"),
        ("read", "read(64 B) of a home file"),
        ("openclose", "open+close of a home file (2 calls)"),
    ):
        native = f.native[call][0]
        fwd = f.forwarded[call][0]
        fast = f.fast[call][0]
        bare = f.bare[call][0]
        rows.append(
            (
                label,
                us(native),
                us(f.disciplined[call][0]),
                us(bare),
                f"{us(fwd)} (median {us(f.forwarded[call][1])})",
                f"{fwd / bare:.2f}x",
                f"{us(fast)} (median {us(f.fast[call][1])})",
                f"{fast / bare:.2f}x",
                f"{fast / native:.0f}x",
            )
        )
    return rows


def us(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns < 10000 else f"{ns / 1000:.1f} µs"


def trap_costs(cluster: LocalCluster, prog: str, runs: int, quick: bool) -> Timings:
    """SIGSYS trap against user notification round trips, on node 2 (trap_costs.c)."""
    n = "5000" if quick else "20000"
    results = []
    for _ in range(runs):
        out = checked(
            cluster.run(AWAY, [prog, n, "5"], capture_output=True, text=True, timeout=TIMEOUT),
            "trap_costs",
        )
        results.append(parse_timings(out)[0])
    return best_of(results)


def process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def trace(cluster: LocalCluster, prog: str, work: Path, n: int) -> fwd_trace.Breakdown:
    """One forwarded run of fwd_calls under perf (see fwd_trace)."""
    proc = cluster.popen(
        HOME,
        ["mosrun", f"-r{node_name(AWAY)}", prog, "/tmp/fwd_trace.dat", str(n), "1", "wait"],
        cwd="/tmp",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    data = work / "perf.data"
    try:
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline() != "ready\n":  # it runs on node 2 now
            sys.exit("bench_cluster: the traced fwd_calls did not start")
        name = Path(prog).name[:15]
        copies = [p for p in cluster.processes(AWAY) if process_name(p) == name]
        if len(copies) != 1:
            sys.exit(f"bench_cluster: {len(copies)} copies of {name} on node 2")
        pids = fwd_trace.Pids(proc.pid, copies[0], parent_of(copies[0]))
        if process_name(pids.remote) != "mosix-remote":
            sys.exit(f"bench_cluster: the copy's parent is {process_name(pids.remote)}")
        perf, ctl = fwd_trace.record(pids, data)
        proc.stdin.write("g")
        proc.stdin.flush()
        out = proc.stdout.read()
        proc.wait(timeout=TIMEOUT)
        perf.wait(timeout=TIMEOUT)  # it ends with the processes it follows
        os.close(ctl)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        sys.exit(f"bench_cluster: the traced fwd_calls failed: {out!r}")
    return fwd_trace.breakdown(fwd_trace.events(data), pids)


def breakdown_rows(b: fwd_trace.Breakdown) -> list[tuple[str, ...]]:
    names = list(b.total)
    rows = []
    for _, _, label in fwd_trace.STAGES:
        rows.append((label, *(us(b.stages[name][label]) for name in names)))
    rows.append(("**traced total**", *(f"**{us(b.total[name])}**" for name in names)))
    return rows


# ------------------------------------------------------------------ migration


@dataclass
class Migration:
    mib: int
    rss: int  # bytes resident before the move: what the image carries
    seconds: float  # from the request to the agent's answer
    downtime: float  # the program's longest pause


MOVE = """
import sys, time
from mosix.tools.migrate import move
t0 = time.monotonic()
ok = move(int(sys.argv[1]), sys.argv[2])
print(t0, time.monotonic(), int(ok), flush=True)
"""


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"process {pid}: no VmRSS")


def migrate_once(cluster: LocalCluster, prog: str, mib: int, rate: float = 0.0) -> Migration:
    """migmem ``mib`` moved from node 1 to node 2 while it runs (writing ``rate`` MiB/s
    of its pages: it checks them itself then)."""
    proc = cluster.popen(
        HOME,
        ["mosrun", prog, str(mib), *([f"{rate:g}"] if rate else [])],
        cwd="/tmp",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "ready":
            sys.exit(f"bench_cluster: migmem {mib} did not start: {proc.stderr.read()}")  # type: ignore[union-attr]
        rss = resident_bytes(proc.pid)
        moved = cluster.run(
            HOME,
            [sys.executable, "-c", MOVE, str(proc.pid), node_name(AWAY)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        words = checked(moved, "migrate").split()
        if len(words) != 3 or words[2] != "1":
            sys.exit(f"bench_cluster: migrate {proc.pid} {node_name(AWAY)}: {moved.stderr.strip()}")
        started, finished = float(words[0]), float(words[1])
        os.kill(proc.pid, signal.SIGUSR1)  # to the deputy, which passes it on
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = out.split()
    if proc.returncode != 0 or len(done) != 4 or done[0] != "done":
        sys.exit(f"bench_cluster: migmem {mib} ended with {proc.returncode}: {out!r} {err.strip()}")
    if not rate and done[3] != ready[1]:
        sys.exit(f"bench_cluster: migmem {mib}: memory changed in the move")
    gap_start, gap_end = int(done[1]) / 1e9, int(done[2]) / 1e9
    if not started <= gap_start <= finished:  # it may first run on node 2 after the answer
        sys.exit(
            f"bench_cluster: migmem {mib}: its longest pause ({gap_start:.3f}-{gap_end:.3f}) "
            f"did not start during the migration ({started:.3f}-{finished:.3f})"
        )
    return Migration(mib, rss, finished - started, gap_end - gap_start)


def migration(
    cluster: LocalCluster, prog: str, sizes: list[int], runs: int
) -> tuple[float, list[Migration]]:
    bandwidth = max(cluster.bandwidth(HOME, AWAY, 128 << 20) for _ in range(runs))
    results = []
    for mib in sizes:
        tries = [migrate_once(cluster, prog, mib) for _ in range(runs if mib <= 100 else 1)]
        results.append(min(tries, key=lambda m: m.seconds))
    return bandwidth, results


def migration_rows(bandwidth: float, results: list[Migration]) -> list[tuple[str, ...]]:
    rows = []
    for m in results:
        floor = m.rss / bandwidth
        rows.append(
            (
                f"{m.mib} MiB",
                f"{m.rss / 2**20:.0f} MiB",
                f"{floor * 1000:.0f} ms",
                f"{m.seconds * 1000:.0f} ms",
                f"{m.downtime * 1000:.0f} ms",
                f"{m.seconds / floor:.2f}x",
                f"{m.downtime / floor:.2f}x",
            )
        )
    return rows


# ------------------------------------------------------------------ report


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run, fewer calls, no 1 GiB")
    ap.add_argument("--runs", type=int, default=3, help="runs of each measurement (best kept)")
    ap.add_argument("--mib", default="10,100,1024", help="resident sizes to migrate, MiB")
    ap.add_argument("--name", default="bench", help="the test cluster's name")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the perf trace")
    a = ap.parse_args()
    runs = 1 if a.quick else a.runs
    sizes = [int(x) for x in a.mib.split(",") if x]
    if a.quick:
        sizes = [m for m in sizes if m <= 100]
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    try:
        progs = build(work)
        fast_settings = ClusterSettings(fast_path=True)
        with (
            LocalCluster(2, a.name, ClusterSettings(fast_path=False)).up() as cluster,
            LocalCluster(2, a.name + "fast", fast_settings).up() as fast_cluster,
        ):
            f = forwarding(cluster, fast_cluster, progs, runs, a.quick)
            header = (
                "call",
                "native",
                "under mosrun, home",
                "bare echo",
                "forwarded, supervisor (best)",
                "/ echo",
                "forwarded, fast path (best)",
                "/ echo",
                "fast / native",
            )
            table(header, forwarding_rows(f))
            print(
                "frames (bytes, request/reply): "
                + ", ".join(f"{k} {q}/{p}" for k, (q, p) in f.sizes.items())
            )
            print()
            traps = trap_costs(cluster, progs.traps, runs, a.quick)
            table(
                ("catching getppid()", "best", "median"),
                [(k, us(v[0]), us(v[1])) for k, v in traps.items()],
            )
            if not a.no_breakdown and fwd_trace.perf_available():
                b = trace(cluster, progs.calls, work, 500 if a.quick else 2000)
                table(("step (median, under perf)", *b.total), breakdown_rows(b))
            bandwidth, moved = migration(cluster, progs.migmem, sizes, runs)
            print(f"link 1 -> 2: {bandwidth / 1e6:.0f} MB/s (TCP, measured in this run)")
            print()
            header = (
                "resident",
                "image (VmRSS)",
                "image / bandwidth",
                "migration",
                "downtime",
                "migration ratio",
                "downtime ratio",
            )
            table(header, migration_rows(bandwidth, moved))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s)")
