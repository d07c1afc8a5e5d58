"""Agent scale: N queued jobs registered with a real mosixd; `mosq list` time; agent memory.

    python3 benchmarks/bench_agent.py [--jobs 100000]

Baselines measured in the same run: the start-up of the Python interpreter
(the floor of any Python command) and `mosq count` (one round trip to the
agent with no listing).  Target: `mosq list` of 100,000 queued jobs in < 1 s.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mosix.agent_client import AgentClient, try_connect
from mosix.agent_paths import AgentPaths
from mosix.protocol import Enqueue, Go, Queued


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_agent(base: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    config = base / "mosixd.toml"
    config.write_text("[queue]\nslots = 1\n")
    env = dict(os.environ, MOSIX_RUN_DIR=str(base / "run"), MOSIX_CONFIG=str(config))
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        ["mosixd", "--run-dir", str(base / "run"), "--ready-fd", str(write_end)],
        pass_fds=[write_end],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    select.select([read_end], [], [], 30)
    os.close(read_end)
    return proc, env


def best_of(argv: list[str], env: dict[str, str], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - began)
    return best


def fill_queue(client: AgentClient, jobs: int) -> float:
    """Enqueue one job that takes the only slot, then ``jobs`` that must wait."""
    client.send(Enqueue(pid=os.getpid(), command=["blocker"]))
    first = client.receive()
    while not isinstance(first, Go):
        first = client.receive()
    began = time.perf_counter()
    batch = 100  # replies of a batch must fit the socket buffer (skb truesize)
    for start in range(0, jobs, batch):
        count = min(batch, jobs - start)
        for i in range(count):
            client.send(Enqueue(pid=os.getpid(), command=["job", str(start + i)]))
        for _ in range(count):
            reply = client.receive(timeout=60)
            assert isinstance(reply, Queued), reply
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mosix-bench-agent-"))
    proc, env = start_agent(base)
    try:
        idle_rss = rss_mb(proc.pid)
        client = try_connect(AgentPaths(base / "run"))
        assert client is not None
        enqueue_s = fill_queue(client, args.jobs)
        full_rss = rss_mb(proc.pid)
        python_s = best_of([sys.executable, "-c", "pass"], env)
        count_s = best_of(["mosq", "count"], env)
        list_s = best_of(["mosq", "list"], env)
        listed = subprocess.run(["mosq", "list"], env=env, capture_output=True, text=True)
        assert len(listed.stdout.splitlines()) == args.jobs + 1, "listing is incomplete"
        rows = [
            ("python3 -c pass (baseline)", python_s, 1.0),
            ("mosq count", count_s, count_s / python_s),
            (f"mosq list ({args.jobs} jobs)", list_s, list_s / python_s),
        ]
        print(f"queued {args.jobs} jobs in {enqueue_s:.2f} s ({args.jobs / enqueue_s:,.0f} jobs/s)")
        print(f"{'command':<32} {'seconds':>8} {'x python start-up':>18}")
        for name, seconds, ratio in rows:
            print(f"{name:<32} {seconds:>8.3f} {ratio:>18.1f}")
        per_job = (full_rss - idle_rss) * 1024 / args.jobs
        print(
            f"agent memory: {idle_rss:.0f} MB idle, {full_rss:.0f} MB with {args.jobs} queued "
            f"({per_job:.2f} KB per job)"
        )
        verdict = "meets" if list_s < 1.0 else "MISSES"
        print(f"target mosq list < 1 s: {verdict}")
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
