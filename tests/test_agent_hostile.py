"""The node agent against hostile users: each attack gets one Refused line, and the
agent (same pid) goes on serving every other user.

The attackers are unprivileged users made by the tests; their programs are
tests/hostile_client.py and the ordinary tools.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent, start_blocker
from support.waiting import wait_until

from mosix.protocol import (
    GetStatus,
    ListQueue,
    QueueListing,
    Refused,
    decode_message,
    encode_message,
)

CLIENT = str(Path(__file__).with_name("hostile_client.py"))


def limited_agent(base: Path, limits: str) -> Agent:
    a = make_agent(base)
    a.config.write_text(a.config.read_text() + "[limits]\n" + limits)
    a.start()
    return a


def agent_pid(a: Agent) -> int:
    return int((a.run_dir / "mosixd.lock").read_text())


def assert_still_serving(a: Agent, pid: int, user: str) -> None:
    """The same agent answers another user: their mosrun registers and mosps lists it."""
    assert a.proc is not None and a.proc.poll() is None, "the agent died"
    assert agent_pid(a) == pid
    result = a.run("mosrun", "-J7", "sh", "-c", "mosps -J 7", user=user)
    assert result.returncode == 0, result.stderr
    assert "sh -c mosps -J 7" in result.stdout
    assert agent_pid(a) == pid


def client(a: Agent, user: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    return a.spawn(
        sys.executable, CLIENT, args[0], str(a.run_dir / "mosixd.sock"), *args[1:], user=user, **kw
    )


def client_output(a: Agent, user: str, *args: str) -> list[str]:
    proc = client(a, user, *args, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out.splitlines()


def log_text(a: Agent) -> str:
    return (a.run_dir.parent / "agent.stderr").read_text()


# ------------------------------------------------------------ connections


@pytest.fixture
def small_agent(agent_base: Path) -> Iterator[Agent]:
    """At most 50 connections, 20 per user; idle connections wait a minute."""
    a = limited_agent(
        agent_base, "connections = 50\nconnections_per_user = 20\nfirst_frame_seconds = 60\n"
    )
    yield a
    cleanup(a)


def test_a_connection_flood_is_refused_in_one_line(
    small_agent: Agent, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    a = small_agent
    pid = agent_pid(a)
    uid = subprocess.run(["id", "-u", alice], capture_output=True, text=True).stdout.strip()
    flood = client(a, alice, "hold", "25", "5", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert flood.stdout is not None
    lines = [flood.stdout.readline().strip() for _ in range(6)]
    over = f"refused: too many connections to the node agent from user {uid} (at most 20)"
    assert lines == [f"{over} then closed"] * 5 + ["holding 20"]
    refused = a.run("mosq", "count", user=alice)
    assert (refused.returncode, refused.stderr) == (125, f"mosq: {over[9:]}\n")
    assert_still_serving(a, pid, bob)
    # bob takes what users may have (50 less root's 12): the rest is refused
    second = client(a, bob, "hold", "25", "7", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert second.stdout is not None
    lines = [second.stdout.readline().strip() for _ in range(8)]
    full = "refused: the node agent has too many connections (38): try again later then closed"
    assert lines == [full] * 7 + ["holding 18"]
    result = a.run("mosrun", "sh", "-c", "mosps")  # root still gets in
    assert result.returncode == 0, result.stderr
    for proc in (flood, second):
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    assert_still_serving(a, pid, bob)


def test_a_silent_connection_is_refused_after_the_first_frame_deadline(
    agent_base: Path, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    a = limited_agent(agent_base, "first_frame_seconds = 1\nframe_seconds = 1\n")
    try:
        pid = agent_pid(a)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
            silent.connect(str(a.run_dir / "mosixd.sock"))
            silent.settimeout(30)
            assert read_frame(silent) == "refused: no request within 1 s"
            assert silent.recv(1) == b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as slow:
            slow.connect(str(a.run_dir / "mosixd.sock"))
            slow.settimeout(30)
            slow.sendall(encode_message(GetStatus()))
            assert read_frame(slow) == "status"
            slow.sendall(struct.pack(">I", 100) + b"\xa1")  # a frame begun, never ended
            assert read_frame(slow) == "refused: no whole frame within 1 s"
        assert_still_serving(a, pid, bob)
        assert_still_serving(a, pid, alice)
    finally:
        cleanup(a)


def read_frame(sock: socket.socket) -> str:
    header = sock.recv(4, socket.MSG_WAITALL)
    (length,) = struct.unpack(">I", header)
    msg = decode_message(sock.recv(length, socket.MSG_WAITALL))
    return f"refused: {msg.error}" if isinstance(msg, Refused) else msg.OP


def test_out_of_descriptors_in_accept_the_agent_waits_and_goes_on(
    agent: Agent, hostile_users: tuple[str, str]
) -> None:
    _, bob = hostile_users
    pid = agent_pid(agent)
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 6, hard))
    socks = []
    try:
        for _ in range(20):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(agent.run_dir / "mosixd.sock"))
            socks.append(sock)
        wait_until(
            lambda: "cannot accept connections for now: Too many open files" in log_text(agent),
            what="the agent to run out of descriptors",
        )
    finally:
        for sock in socks:
            sock.close()
    assert_still_serving(agent, pid, bob)  # still at the low limit: the closed ones freed it
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------- long listings


def test_huge_commands_are_listed_cut_to_fit(
    agent: Agent, hostile_users: tuple[str, str], tmp_path: Path
) -> None:
    alice, bob = hostile_users
    pid = agent_pid(agent)
    big = ["x" * 90_000 for _ in range(6)]  # 540 KB of arguments per program
    programs = [
        agent.spawn(
            "mosrun",
            "sh",
            "-c",
            "echo ready; exec cat",
            "big",
            *big,
            user=alice,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in programs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    listed = agent.run("mosps", user=alice)
    assert listed.returncode == 0, listed.stderr
    rows = {int(line.split()[0]): line for line in listed.stdout.splitlines()[1:]}
    for proc in programs:
        assert rows[proc.pid].endswith("..."), rows[proc.pid][-80:]
        assert 64 * 1024 < len(rows[proc.pid]) < 66 * 1024
    assert_still_serving(agent, pid, bob)
    # the same through the queue: large queued commands, then mosq list
    blocker = start_blocker(agent)
    queued = [agent.spawn("mosrun", "-q", "true", *big, user=alice) for _ in range(2)]
    wait_until(lambda: agent.queued_count(alice) == 2, what="alice's jobs to be queued")
    listing = agent.run("mosq", "list", user=alice)
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 3
    assert_still_serving(agent, pid, bob)
    for proc in [blocker, *programs]:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    for proc in queued:
        assert proc.wait(timeout=60) == 0


# ------------------------------------------------------------------ queue


def tickets(a: Agent) -> dict[int, int]:
    """pid -> queue ticket of every queued job (root's view)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(a.run_dir / "mosixd.sock"))
        sock.settimeout(30)
        sock.sendall(encode_message(ListQueue(all_users=True)))
        (length,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
        listing = decode_message(sock.recv(length, socket.MSG_WAITALL))
    assert isinstance(listing, QueueListing) and not listing.more
    return {e.pid: e.ticket for e in listing.entries}


def test_a_running_ticket_cannot_be_taken_by_another_user(
    agent: Agent, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    pid = agent_pid(agent)
    holder = agent.spawn(
        "mosrun",
        "-q",
        "sh",
        "-c",
        "echo running; exec cat",
        user=alice,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "running"
    # a fresh agent's first ticket is 1: bob presents it, releases it, asks for the facts
    assert client_output(agent, bob, "present", "1") == [
        "refused: ticket 1 belongs to another process",
        "running: 1",  # alice's job still holds the only slot
    ]
    waiting = agent.spawn("mosrun", "-q", "true")
    wait_until(lambda: agent.queued_count() == 1, what="root's job to wait for the slot")
    assert_still_serving(agent, pid, bob)
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert waiting.wait(timeout=60) == 0


def test_a_queued_ticket_cannot_be_taken_by_another_user(
    agent: Agent, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    pid = agent_pid(agent)
    blocker = start_blocker(agent)
    job = agent.spawn("mosrun", "-q", "echo", "alice ran", user=alice, stdout=subprocess.PIPE)
    wait_until(lambda: agent.queued_count(alice) == 1, what="alice's job to be queued")
    ticket = tickets(agent)[job.pid]
    assert client_output(agent, bob, "present", str(ticket))[0] == (
        f"refused: ticket {ticket} belongs to another process"
    )
    assert tickets(agent) == {job.pid: ticket}
    assert_still_serving(agent, pid, bob)
    assert blocker.stdin is not None
    blocker.stdin.close()
    assert blocker.wait(timeout=30) == 0
    out, _ = job.communicate(timeout=30)
    assert (job.returncode, out) == (0, "alice ran\n")


def test_one_users_queue_entries_and_their_size_are_capped(
    agent_base: Path, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    a = limited_agent(agent_base, "queued_per_user = 50\nstate_per_user = 1000000\n")
    try:
        pid = agent_pid(a)
        uid = subprocess.run(["id", "-u", bob], capture_output=True, text=True).stdout.strip()
        # the single slot is taken, so bob's entries stay queued while his connection lasts
        blocker = start_blocker(a)
        assert client_output(a, bob, "flood", "2000", "10") == [
            "queued 50",
            f"refused: user {uid} has 50 queued jobs: the most allowed",
        ]
        # 900 KB commands are kept as 64 KiB: fifteen fit in a million characters
        assert client_output(a, bob, "flood", "30", "900000") == [
            "queued 15",
            f"refused: user {uid}'s queued and registered commands would take more than "
            "1000000 characters of the node agent's memory",
        ]
        assert (a.run_dir / "state.cbor").stat().st_size < 2_000_000
        assert_still_serving(a, pid, alice)
        assert blocker.stdin is not None
        blocker.stdin.close()
        assert blocker.wait(timeout=30) == 0
    finally:
        cleanup(a)


def test_priorities_better_than_the_default_are_roots(
    agent: Agent, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    pid = agent_pid(agent)
    refused = agent.run("mosrun", "-q10", "true", user=alice)
    assert (refused.returncode, refused.stderr) == (
        125,
        "mosrun: -q: priority 10: only root may give a priority below 50\n",
    )
    commands = agent.run_dir.parent / "commands"
    commands.write_text("true\ntrue\ntrue\n")
    batch = agent.run("mosrun", "-S2", "-q10", str(commands), user=alice)
    assert batch.returncode == 3  # none of the three lines ran, and it said why once
    assert batch.stderr.count("only root may give a priority below 50") == 1, batch.stderr
    blocker = start_blocker(agent)
    job = agent.spawn("mosrun", "-q60", "true", user=alice)
    wait_until(lambda: agent.queued_count(alice) == 1, what="alice's job to be queued")
    refused = agent.run("mosq", "cngpri", "0", str(job.pid), user=alice)
    assert (refused.returncode, refused.stderr) == (
        125,
        "mosq: priority 0: only root may give a priority below 50\n",
    )
    assert agent.run("mosq", "cngpri", "70", str(job.pid), user=alice).returncode == 0
    assert agent.run("mosq", "cngpri", "5", str(job.pid)).returncode == 0  # root may
    priorities = agent.run("mosq", "list", user=alice).stdout.splitlines()[1:]
    assert [line.split()[4] for line in priorities] == ["5"]
    assert_still_serving(agent, pid, bob)
    assert blocker.stdin is not None
    blocker.stdin.close()
    assert blocker.wait(timeout=30) == 0
    assert job.wait(timeout=60) == 0


def test_a_users_queued_job_keeps_its_ticket_across_an_agent_restart(
    agent: Agent, hostile_users: tuple[str, str]
) -> None:
    alice, bob = hostile_users
    blocker = start_blocker(agent)
    job = agent.spawn("mosrun", "-q", "echo", "alice ran", user=alice, stdout=subprocess.PIPE)
    wait_until(lambda: agent.queued_count(alice) == 1, what="alice's job to be queued")
    ticket = tickets(agent)[job.pid]
    agent.kill9()
    agent.start()
    pid = agent_pid(agent)
    # whether alice's mosqueue is back yet or not, bob cannot take her place
    assert client_output(agent, bob, "present", str(ticket))[0] == (
        f"refused: ticket {ticket} belongs to another process"
    )
    wait_until(lambda: tickets(agent) == {job.pid: ticket}, what="alice's job to be back")
    assert blocker.stdin is not None
    blocker.stdin.close()
    assert blocker.wait(timeout=30) == 0
    out, _ = job.communicate(timeout=60)
    assert (job.returncode, out) == (0, "alice ran\n")
    assert_still_serving(agent, pid, bob)
