"""The node agent with real processes: registry, queue, permissions, native, faults."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from support.agents import Agent, cleanup, make_agent, start_blocker, stop_embedded_agent
from support.waiting import wait_until

from mosix.protocol import MAX_FRAME, Refused, decode_message


def mosps_rows(a: Agent, *args: str, user: str | None = None) -> dict[int, list[str]]:
    result = a.run("mosps", *args, user=user)
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines()[1:]:
        words = line.split()
        rows[int(words[0])] = words
    return rows


def ready_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


# ------------------------------------------------------- embedded default


def test_first_mosrun_starts_the_embedded_agent(agent_base: Path) -> None:
    run_dir = agent_base / "embedded"
    env = dict(os.environ, MOSIX_RUN_DIR=str(run_dir))
    try:
        result = subprocess.run(
            ["mosrun", "-D1h", "sh", "-c", "mosps"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert (run_dir / "mosixd.sock").is_socket()
        assert "listening on" in (run_dir / "mosixd.log").read_text()
        # mosps ran inside the program, which is registered with its estimate
        row = [line for line in result.stdout.splitlines() if "sh -c mosps" in line]
        assert row and "1h0m" in row[0], result.stdout
        # a second mosrun uses the same agent
        lock_pid = (run_dir / "mosixd.lock").read_text()
        assert subprocess.run(["mosrun", "true"], env=env, timeout=60).returncode == 0
        assert (run_dir / "mosixd.lock").read_text() == lock_pid
    finally:
        stop_embedded_agent(run_dir)


# --------------------------------------------------------------- registry


def test_registered_process_and_its_descendants_are_listed(agent: Agent) -> None:
    # sh gives a background job /dev/null as stdin: pass the pipe as fd 3
    script = "exec 3<&0; sh -c 'echo child $$; exec cat <&3' & echo parent $$; wait"
    proc = agent.spawn(
        "mosrun",
        "-J5",
        "-D1d2h3m",
        "-m10",
        "sh",
        "-c",
        script,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    first, second = sorted([ready_line(proc), ready_line(proc)])
    child, parent = int(first.split()[1]), int(second.split()[1])
    rows = mosps_rows(agent)
    assert rows[parent][1:6] == ["root", "5", "home", "running", "1d2h3m"]
    assert rows[child][1:5] == ["root", "5", "home", "running"]  # found through /proc
    assert mosps_rows(agent, "-J", "6") == {}
    assert set(mosps_rows(agent, "-J", "5")) >= {parent, child}
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    wait_until(lambda: parent not in mosps_rows(agent), what="the ended process to go")


def test_agent_restart_loses_no_registration(agent: Agent) -> None:
    proc = agent.spawn(
        "mosrun",
        "-D2h",
        "sh",
        "-c",
        "echo $$; exec cat",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    pid = int(ready_line(proc))
    assert mosps_rows(agent)[pid][5] == "2h0m"
    agent.kill9()
    agent.start()
    assert mosps_rows(agent)[pid][5] == "2h0m"  # the estimate came back from the state file


# ------------------------------------------------------------------ queue


def queue_jobs(a: Agent, log: Path, jobs: list[tuple[str, str]]) -> list[subprocess.Popen[str]]:
    procs = []
    for name, option in jobs:
        procs.append(a.spawn("mosrun", option, "sh", "-c", f"echo {name} >> {log}"))
        expected = len(procs)
        wait_until(lambda n=expected: a.queued_count() == n, what=f"{name} to be queued")
    return procs


def release(blocker: subprocess.Popen[str]) -> None:
    assert blocker.stdin is not None
    blocker.stdin.close()
    assert blocker.wait(timeout=30) == 0


def test_queue_runs_by_priority_then_arrival(agent: Agent, tmp_path: Path) -> None:
    log = tmp_path / "order"
    blocker = start_blocker(agent)
    procs = queue_jobs(
        agent, log, [("b60", "-q60"), ("c10", "-q10"), ("d60", "-q60"), ("e", "-q"), ("f0", "-Q0")]
    )
    listing = agent.run("mosq", "list").stdout.splitlines()[1:]
    assert [int(line.split()[4]) for line in listing] == [0, 10, 50, 60, 60]
    release(blocker)
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert log.read_text().split() == ["f0", "c10", "e", "b60", "d60"]


def test_queued_job_shows_as_mosqueue_in_ps(agent: Agent, tmp_path: Path) -> None:
    blocker = start_blocker(agent)
    (waiting,) = queue_jobs(agent, tmp_path / "log", [("w", "-q")])
    comm = Path(f"/proc/{waiting.pid}/comm").read_text().strip()
    cmdline = Path(f"/proc/{waiting.pid}/cmdline").read_bytes().split(b"\0")
    assert comm == "mosqueue"
    assert cmdline[0] == b"mosqueue"
    rows = mosps_rows(agent)
    assert rows[waiting.pid][4] == "queued"
    release(blocker)
    assert waiting.wait(timeout=60) == 0


def test_a_queued_program_sees_the_callers_environment(agent: Agent, tmp_path: Path) -> None:
    """Waiting as mosqueue leaves nothing of its own in the program's environment."""
    blocker = start_blocker(agent)
    out = tmp_path / "env"
    mosrun = shutil.which("mosrun")
    assert mosrun is not None
    interpreter = Path(mosrun).read_text().splitlines()[0].removeprefix("#!").strip()
    for given in (None, interpreter):  # a caller's own PYTHONEXECUTABLE is given back
        env = dict(agent.env)
        env.pop("PYTHONEXECUTABLE", None)
        if given is not None:
            env["PYTHONEXECUTABLE"] = given
        job = subprocess.Popen(
            ["mosrun", "-q", "sh", "-c", f"env > {out}"], env=env, stdin=subprocess.DEVNULL
        )
        wait_until(lambda: agent.queued_count() == 1, what="the job to be queued")
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0] == b"mosqueue"
        assert agent.run("mosq", "run", str(job.pid)).returncode == 0
        assert job.wait(timeout=60) == 0
        seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        assert seen.get("PYTHONEXECUTABLE") == given
        assert not any(name.startswith("MOSIX_SAVED") for name in seen)
    release(blocker)


def test_cngpri_advance_retard(agent: Agent, tmp_path: Path) -> None:
    log = tmp_path / "order"
    blocker = start_blocker(agent)
    a, b, c = queue_jobs(agent, log, [("a", "-q"), ("b", "-q"), ("c", "-q")])
    assert agent.run("mosq", "advance", str(c.pid)).returncode == 0  # c a b
    assert agent.run("mosq", "retard", str(a.pid)).returncode == 0  # c b a
    assert agent.run("mosq", "cngpri", "5", str(a.pid)).returncode == 0  # a c b
    release(blocker)
    for p in (a, b, c):
        assert p.wait(timeout=60) == 0
    assert log.read_text().split() == ["a", "c", "b"]


def test_mosq_run_bypasses_the_queue(agent: Agent, tmp_path: Path) -> None:
    log = tmp_path / "order"
    blocker = start_blocker(agent)
    (job,) = queue_jobs(agent, log, [("now", "-q")])
    assert agent.run("mosq", "run", str(job.pid)).returncode == 0
    assert job.wait(timeout=60) == 0  # ran while the blocker still holds the only slot
    assert log.read_text() == "now\n"
    release(blocker)


def test_abort_kills_q_jobs_and_runs_Q_jobs(agent: Agent, tmp_path: Path) -> None:
    log = tmp_path / "order"
    blocker = start_blocker(agent)
    small_q, big_q = queue_jobs(agent, log, [("killed", "-q"), ("runs", "-Q")])
    small_q_err = agent.run("mosq", "abort", str(small_q.pid))
    assert small_q_err.returncode == 0, small_q_err.stderr
    assert small_q.wait(timeout=30) == -signal.SIGKILL
    assert agent.run("mosq", "abort", str(big_q.pid)).returncode == 0
    assert big_q.wait(timeout=30) == 0
    assert log.read_text() == "runs\n"
    release(blocker)


def test_agent_stop_kills_q_jobs_and_runs_Q_jobs(agent: Agent, tmp_path: Path) -> None:
    log = tmp_path / "order"
    blocker = start_blocker(agent)
    q_job, big_q = queue_jobs(agent, log, [("killed", "-q"), ("runs", "-Q")])
    assert agent.run("mosctl", "shutdown").returncode == 0
    assert q_job.wait(timeout=30) == -signal.SIGKILL
    assert big_q.wait(timeout=30) == 0
    assert log.read_text() == "runs\n"
    release(blocker)


def test_agent_kill9_and_restart_keeps_the_queue(agent: Agent, tmp_path: Path) -> None:
    log = tmp_path / "order"
    blocker = start_blocker(agent)
    procs = queue_jobs(agent, log, [("x60", "-q60"), ("y", "-q"), ("z", "-q")])
    assert agent.run("mosq", "advance", str(procs[2].pid)).returncode == 0  # z y x60
    agent.kill9()
    # the queued mosruns notice, start a new agent (the embedded default) and re-enqueue
    wait_until(lambda: agent.queued_count() == 3, what="the queued jobs to come back")
    assert agent.run("mosq", "list").stdout.split("\n")[1].split()[1] == str(procs[2].pid)
    release(blocker)
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert log.read_text().split() == ["z", "y", "x60"]


def test_queue_refuses_impossible_memory(agent: Agent) -> None:
    result = agent.run("mosrun", "-q", "-m99999999", "true")
    assert result.returncode == 125
    assert result.stderr.startswith("mosrun: -q: -m99999999: no node has that much memory")


def test_mosq_errors_are_one_line(agent: Agent) -> None:
    result = agent.run("mosq", "abort", "999999")
    assert (result.returncode, result.stderr) == (125, "mosq: process 999999 is not queued\n")
    result = agent.run("mosq", "run", "-j", "77")
    assert (result.returncode, result.stderr) == (125, "mosq: job 77 is not queued\n")


# ------------------------------------------------------------ permissions


def test_users_see_and_act_only_on_their_own(
    agent: Agent,
    two_users: tuple[str, str],
    tmp_path: Path,
) -> None:
    alice, bob = two_users
    blocker = start_blocker(agent)
    job = agent.spawn("mosrun", "-q", "-J3", "true", user=alice)
    wait_until(
        lambda: agent.queued_count() == 0 and agent.queued_count(alice) == 1,
        what="alice's job to be queued",
    )
    alice_rows = mosps_rows(agent, user=alice)
    assert alice_rows[job.pid][1:5] == [alice, "3", "queue", "queued"]
    assert mosps_rows(agent, user=bob) == {}
    refused = agent.run("mosq", "abort", str(job.pid), user=bob)
    assert (refused.returncode, refused.stderr) == (
        125,
        f"mosq: process {job.pid} belongs to another user\n",
    )
    refused = agent.run("mosq", "listall", user=bob)
    assert refused.stderr == "mosq: only root may list other users' queued jobs\n"
    refused = agent.run("mosps", "-a", user=bob)
    assert refused.stderr == "mosps: only root may list other users' processes\n"
    refused = agent.run("mosq", "run", "-j", "3", user=bob)
    assert refused.stderr == "mosq: job 3 has no queued processes of yours\n"
    killed = agent.run("moskillall", "-J", "3", user=bob)
    assert killed.returncode == 0 and job.poll() is None  # bob signalled nothing of alice's
    assert agent.run("mosctl", "shutdown", user=bob).stderr == (
        "mosctl: only root or the agent's owner may stop the agent\n"
    )
    root_rows = mosps_rows(agent)  # root sees everyone's
    assert job.pid in root_rows
    assert agent.run("mosq", "run", str(job.pid), user=alice).returncode == 0
    assert job.wait(timeout=60) == 0
    release(blocker)


# ----------------------------------------------------------------- native


def test_native_from_under_the_discipline(agent: Agent, tmp_path: Path) -> None:
    script = "native sh -c 'grep ^Seccomp: /proc/self/status; cat; exit 9'; echo \"status $?\""
    result = agent.run("mosrun", "sh", "-c", script, input="through stdin\n")
    lines = result.stdout.splitlines()
    assert lines[-1] == "status 9", result.stderr
    assert "through stdin" in lines
    seccomp = [line for line in lines if line.startswith("Seccomp:")]
    assert seccomp and seccomp[0].split()[1] == "0"  # outside any filter


def test_native_passes_death_signal(agent: Agent) -> None:
    result = agent.run("mosrun", "sh", "-c", "native sh -c 'kill -USR1 $$'; echo $?")
    assert result.stdout.strip() == str(128 + signal.SIGUSR1)


def test_native_program_not_found(agent: Agent) -> None:
    result = agent.run("mosrun", "sh", "-c", "native no-such-prog; echo $?")
    assert result.stdout.strip() == "127"


# ----------------------------------------------------------------- faults


def raw_connect(a: Agent) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(a.run_dir / "mosixd.sock"))
    sock.settimeout(30)
    return sock


def read_reply(sock: socket.socket) -> object:
    header = sock.recv(4, socket.MSG_WAITALL)
    (length,) = struct.unpack(">I", header)
    return decode_message(sock.recv(length, socket.MSG_WAITALL))


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff", "bad request: not CBOR"),
        (struct.pack(">I", 1) + b"\x01", "bad request: a message must be a map"),
        (struct.pack(">I", MAX_FRAME + 1), "bad request: frame of"),
        (struct.pack(">I", 9) + b"\xa1bopcxyz" + b"\x00", "bad request: trailing bytes"),
        (struct.pack(">I", 8) + b"\xa1bopcxyz", "bad request: unknown message 'xyz'"),
    ],
)
def test_garbage_gets_an_error_and_the_agent_lives(
    agent: Agent,
    frame: bytes,
    error: str,
) -> None:
    with raw_connect(agent) as sock:
        sock.sendall(frame)
        reply = read_reply(sock)
        assert isinstance(reply, Refused)
        assert reply.error.startswith(error), reply.error
    assert agent.run("mosq", "count").stdout == "0\n"


def test_wrong_field_types_are_refused(agent: Agent) -> None:
    import cbor2

    payload = cbor2.dumps({"op": "queue-action", "action": "run", "ident": "seven"})
    with raw_connect(agent) as sock:
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        reply = read_reply(sock)
    assert isinstance(reply, Refused)
    assert reply.error == "bad request: queue-action.ident: expected an integer"


def test_a_dead_agent_is_a_clear_error(agent_base: Path) -> None:
    a = make_agent(agent_base)
    a.run_dir.mkdir()
    result = a.run("mosctl", "shutdown")
    assert result.returncode == 125
    assert result.stderr == f"mosctl: no node agent runs ({a.run_dir / 'mosixd.sock'})\n"
    cleanup(a)


def test_a_wedged_agent_is_a_clear_error(agent: Agent) -> None:
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        env = dict(agent.env, MOSIX_AGENT_TIMEOUT="1")
        result = subprocess.run(
            ["mosq", "list"], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 125
        assert result.stderr == (
            f"mosq: the node agent does not answer ({agent.run_dir / 'mosixd.sock'})\n"
        )
        # a plain mosrun still runs its program: registration is best effort
        result = subprocess.run(["mosrun", "sh", "-c", "exit 4"], env=env, timeout=60)
        assert result.returncode == 4
    finally:
        agent.proc.send_signal(signal.SIGCONT)


def test_sigusr1_writes_what_each_task_waits_for_and_the_agent_goes_on(agent: Agent) -> None:
    """An administrator's look into an agent that seems stuck: every trio task and the
    line it waits at, in the log; the agent answers as before."""
    assert agent.proc is not None
    log = agent.run_dir.parent / "agent.stderr"
    agent.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "tasks (" in log.read_text(), what="the task dump in the log")
    dump = log.read_text().split("tasks (", 1)[1]
    assert "task_dump.py" in dump and "dump_tasks_on_signal" in dump  # the dumper itself
    assert "control_socket.py" in dump  # the listener, waiting for a client
    assert agent.run("mosps").returncode == 0


def test_state_file_damage_does_not_keep_the_agent_down(agent_base: Path) -> None:
    a = make_agent(agent_base)
    a.run_dir.mkdir()
    (a.run_dir / "state.cbor").write_bytes(b"\x00garbage")
    a.start()
    try:
        assert a.run("mosq", "count").stdout == "0\n"
        assert "ignoring" in (agent_base / "agent.stderr").read_text()
    finally:
        cleanup(a)


def test_status_shows_node_facts(agent: Agent) -> None:
    result = agent.run("mosctl", "status")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["cpus"].split()[0] == str(len(os.sched_getaffinity(0)))
    assert "MB free of" in fields["memory"]
    assert "of 1 slots" in fields["queue"]


def test_a_user_cannot_register_or_queue_anothers_process(
    agent: Agent,
    two_users: tuple[str, str],
) -> None:
    alice, bob = two_users
    victim = agent.spawn(
        "sh",
        "-c",
        "echo ready; exec cat",
        user=alice,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert ready_line(victim) == "ready"
    snippet = (
        "import sys\n"
        "from mosix.agent_client import connect, AgentRefused\n"
        "from mosix.protocol import Register, Enqueue, Registered, Queued\n"
        "pid = int(sys.argv[1])\n"
        "for msg, kind in ((Register(pid=pid), Registered), (Enqueue(pid=pid), Queued)):\n"
        "    try:\n"
        "        connect(autostart=False).request(msg, kind)\n"
        "        print('accepted')\n"
        "    except AgentRefused as e:\n"
        "        print(e.message)\n"
    )
    import sys

    result = agent.run(sys.executable, "-c", snippet, str(victim.pid), user=bob)
    assert result.stdout.splitlines() == [f"process {victim.pid} belongs to another user"] * 2, (
        result.stderr
    )
    assert victim.stdin is not None
    victim.stdin.close()
    victim.wait(timeout=30)


# ------------------------------------------------------------ -S with -q


def test_commands_with_q_wait_in_the_queue_ten_at_most(agent: Agent, tmp_path: Path) -> None:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    stamps = tmp_path / "stamps"
    lines = [f"read x < {fifo}; echo first >> {stamps}"]
    lines += [f"echo {i} >> {stamps}" for i in range(1, 30)]
    commands = tmp_path / "cmds"
    commands.write_text("\n".join(lines) + "\n")
    run = agent.spawn("mosrun", "-S30", "-q", str(commands))
    # one slot: the first line holds it; of the other 29, exactly 10 wait in the queue
    wait_until(lambda: agent.queued_count() == 10, what="ten lines to be queued")
    assert agent.queued_count() == 10
    listing = agent.run("mosq", "list").stdout.splitlines()[1:]
    assert len(listing) == 10
    assert all("bash -c echo" in line for line in listing)
    with open(fifo, "w") as gate:
        gate.write("go\n")
    assert run.wait(timeout=120) == 0
    written = stamps.read_text().split()
    assert written == ["first", *map(str, range(1, 30))]  # one slot: file order
    assert agent.queued_count() == 0


def test_commands_with_q_lines_aborted_by_a_stopping_agent_fail(
    agent: Agent, tmp_path: Path
) -> None:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    commands = tmp_path / "cmds"
    commands.write_text(f"read x < {fifo}\ntrue\ntrue\n")
    failed = tmp_path / "failed"
    run = agent.spawn("mosrun", "-S3", "-q", f"{commands},{failed}", stderr=subprocess.PIPE)
    wait_until(lambda: agent.queued_count() == 2, what="two lines to be queued")
    assert agent.run("mosctl", "shutdown").returncode == 0
    with open(fifo, "w") as gate:
        gate.write("go\n")
    assert run.wait(timeout=60) == 2  # the two queued -q lines were killed, not run
    assert failed.read_text() == "true\ntrue\n"
    assert run.stderr is not None
    assert "the queue aborted it; it did not run" in run.stderr.read()


def test_commands_with_q_survive_agent_kill9(agent: Agent, tmp_path: Path) -> None:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    stamps = tmp_path / "stamps"
    lines = [f"read x < {fifo}; echo 0 >> {stamps}"]
    lines += [f"echo {i} >> {stamps}" for i in range(1, 5)]
    commands = tmp_path / "cmds"
    commands.write_text("\n".join(lines) + "\n")
    run = agent.spawn("mosrun", "-S5", "-q", str(commands))
    wait_until(lambda: agent.queued_count() == 4, what="four lines to be queued")
    agent.kill9()
    # any client starts a new agent; it takes back what the state file had, and the
    # runner presents its tickets again when it next talks to the agent
    assert agent.run("mosq", "count").returncode == 0
    with open(fifo, "w") as gate:
        gate.write("go\n")
    assert run.wait(timeout=120) == 0
    assert stamps.read_text().split() == ["0", "1", "2", "3", "4"]  # nothing lost, in order
