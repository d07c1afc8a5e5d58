"""Batch jobs (mosrun -E/-M) in a real test cluster (network + mount namespaces, one
mosixd each): the job runs wholly on the chosen node (its /tmp is that node's), its
standard streams go through the submitting mosrun, its end comes back exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.agents import as_user
from support.users import users_fixture
from support.waiting import wait_until

from mosix.testcluster import LocalCluster

pytestmark = pytest.mark.cluster

BIG = 3 * 1024 * 1024  # bytes of output that must come back byte-identical


def run(cluster: LocalCluster, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return cluster.run(1, argv, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[arg-type]


def mosrun_pids(script: str) -> list[int]:
    """The pids of the mosrun processes (not nsenter's) whose job is ``sh -c script``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            continue
        if len(words) > 2 and words[1].endswith(b"/mosrun") and script.encode() in words:
            found.append(int(entry))
    return found


def test_runs_on_the_chosen_node_with_its_private_tmp(cluster3: LocalCluster) -> None:
    cluster3.node_path(2, "/tmp/batch-here").write_text("node two\n")
    done = run(cluster3, ["mosrun", "-E", "-2", "cat", "/tmp/batch-here"])
    assert (done.returncode, done.stdout) == (0, "node two\n"), done.stderr
    written = run(cluster3, ["mosrun", "-E", "-2", "sh", "-c", "echo made > /tmp/batch-made"])
    assert written.returncode == 0, written.stderr
    assert cluster3.node_path(2, "/tmp/batch-made").read_text() == "made\n"
    assert not cluster3.node_path(1, "/tmp/batch-made").exists()


def test_output_comes_back_byte_identical(cluster3: LocalCluster) -> None:
    script = f"head -c {BIG} /dev/urandom | tee /tmp/batch-big"
    done = cluster3.run(
        1, ["mosrun", "-E", "-2", "sh", "-c", script], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    there = cluster3.node_path(2, "/tmp/batch-big").read_bytes()
    assert len(done.stdout) == BIG
    assert hashlib.sha256(done.stdout).digest() == hashlib.sha256(there).digest()


def test_stdin_reaches_the_job_and_stderr_comes_back(cluster3: LocalCluster) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))
    done = run(
        cluster3,
        ["mosrun", "-E", "-2", "sh", "-c", "wc -l; echo to-stderr >&2"],
        input=data,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "20000"
    assert done.stderr == "to-stderr\n"


def test_exit_status_and_death_signal_pass_through(cluster3: LocalCluster) -> None:
    assert run(cluster3, ["mosrun", "-E", "-2", "sh", "-c", "exit 5"]).returncode == 5
    killed = run(cluster3, ["mosrun", "-E", "-2", "sh", "-c", "kill -TERM $$"])
    assert killed.returncode == -signal.SIGTERM, killed.stderr


def test_a_signal_to_mosrun_reaches_the_job(cluster3: LocalCluster) -> None:
    # ready once the sleep runs: a TERM before its fork would leave it holding the output
    script = "trap 'echo got TERM; exit 7' TERM; sleep 60 & echo ready; wait"
    proc = cluster3.popen(
        1,
        ["mosrun", "-E", "-2", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    mosrun = mosrun_pids(script)
    assert len(mosrun) == 1
    os.kill(mosrun[0], signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 7, stderr  # the job's own handler ran, there
    assert stdout == "got TERM\n"


def test_a_call_the_discipline_refuses_runs_under_E(cluster3: LocalCluster) -> None:
    native = run(cluster3, ["mosrun", "-E", "-2", "setarch", "x86_64", "echo", "ran"])
    assert (native.returncode, native.stdout) == (0, "ran\n"), native.stderr


def test_M_runs_under_the_discipline_there(cluster3: LocalCluster) -> None:
    probe = ["sh", "-c", "grep ^Seccomp: /proc/self/status; cat /tmp/batch-m"]
    cluster3.node_path(2, "/tmp/batch-m").write_text("m on two\n")
    native = run(cluster3, ["mosrun", "-E", "-2", *probe])
    assert native.stdout.split() == ["Seccomp:", "0", "m", "on", "two"], native.stderr
    disciplined = run(cluster3, ["mosrun", "-M", "-2", *probe])
    assert disciplined.returncode == 0, disciplined.stderr
    assert disciplined.stdout.split() == ["Seccomp:", "2", "m", "on", "two"]
    refused = run(cluster3, ["mosrun", "-M", "-2", "setarch", "x86_64", "echo", "ran"])
    assert refused.returncode != 0 and "ran" not in refused.stdout
    assert "personality" in refused.stderr


def test_cwd_sets_the_directory(cluster3: LocalCluster) -> None:
    here = run(cluster3, ["mosrun", "-E", "-2", "pwd"], cwd="/var/tmp")
    assert here.stdout == "/var/tmp\n", here.stderr
    there = run(cluster3, ["mosrun", "-E/usr/bin", "-2", "pwd"], cwd="/var/tmp")
    assert there.stdout == "/usr/bin\n", there.stderr
    mosix = run(cluster3, ["mosrun", "-M/usr", "-2", "pwd"], cwd="/var/tmp")
    assert mosix.stdout == "/usr\n", mosix.stderr
    missing = run(cluster3, ["mosrun", "-E/no/such/dir", "-2", "pwd"])
    assert missing.returncode == 125
    assert missing.stderr.count("\n") == 1 and "/no/such/dir" not in missing.stdout
    assert "directory" in missing.stderr


def test_a_bad_node_is_one_line_and_125(cluster3: LocalCluster) -> None:
    done = run(cluster3, ["mosrun", "-E", "-9", "true"])
    assert done.returncode == 125
    assert done.stderr.count("\n") == 1 and "-9" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    missing = run(cluster3, ["mosrun", "-E", "-2", "no-such-program-here"])
    assert missing.returncode == 127, missing.stderr


def test_in_the_background_it_reads_no_terminal_without_i(cluster3: LocalCluster) -> None:
    """An interactive shell's background job (its own process group, not the terminal's
    foreground): without -i mosrun leaves the terminal to the shell, so it is not stopped
    by SIGTTIN and the job's output and status come back."""
    master, slave = pty.openpty()
    os.write(master, b"typed for the shell\n")  # waiting in the terminal: not the job's
    script = "set -m; mosrun -E -2 echo done & wait $!; echo status $?; read line; echo $line"
    try:
        proc = cluster3.popen(
            1,
            ["setsid", "--ctty", "sh", "-c", script],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert stdout == "done\nstatus 0\ntyped for the shell\n", stderr


def test_i_with_input_from_a_file(cluster3: LocalCluster, tmp_path: Path) -> None:
    data = tmp_path / "input"
    data.write_bytes(os.urandom(1 << 20))
    with data.open("rb") as f:
        done = cluster3.run(
            1, ["mosrun", "-i", "-E", "-2", "sha256sum"], stdin=f, capture_output=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0].decode() == hashlib.sha256(data.read_bytes()).hexdigest()


def test_mosps_shows_batch_jobs(cluster3: LocalCluster) -> None:
    for kind, state, home_node in (("-E", "batch", None), ("-M", "batch-M", 2)):
        script = f"echo ready; exec sleep 61 # {kind}"
        proc = cluster3.popen(
            1,
            ["mosrun", kind, "-2", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
            (pid,) = mosrun_pids(script)
            listing = run(cluster3, ["mosps"]).stdout.splitlines()
            mine = [line.split() for line in listing if line.split()[:1] == [str(pid)]]
            assert [(words[3], words[4]) for words in mine] == [("node2", state)], listing
            if home_node is not None:  # -M: a MOSIX process there, its home there
                there = cluster3.run(
                    home_node, ["mosps"], capture_output=True, text=True, timeout=60
                ).stdout
                assert "sleep 61" in there, there
        finally:
            os.kill(pid, signal.SIGTERM)
            proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM


def test_moskillall_ends_a_batch_job(cluster3: LocalCluster) -> None:
    script = "trap 'echo got TERM; exit 9' TERM; echo ready; sleep 62 & wait"
    proc = cluster3.popen(
        1,
        ["mosrun", "-E", "-2", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    assert run(cluster3, ["moskillall"]).returncode == 0
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stdout) == (9, "got TERM\n"), stderr


batch_users = users_fixture(("mosixbatch1", "mosixbatch2"))


def test_a_users_job_runs_as_the_user_and_enters_only_what_the_user_may(
    cluster3: LocalCluster, batch_users: tuple[str, str]
) -> None:
    user = batch_users[0]
    entry = pwd.getpwnam(user)
    ids = run(cluster3, as_user(user, ("mosrun", "-E/", "-2", "sh", "-c", "id -u; id -g")))
    assert ids.stdout.split() == [str(entry.pw_uid), str(entry.pw_gid)], ids.stderr
    cluster3.node_path(2, "/tmp/batch-root-only").mkdir(mode=0o700, exist_ok=True)
    denied = run(cluster3, as_user(user, ("mosrun", "-E/tmp/batch-root-only", "-2", "pwd")))
    assert denied.returncode == 125 and denied.stdout == ""
    assert denied.stderr.count("\n") == 1 and "Permission denied" in denied.stderr


def test_a_killed_mosrun_leaves_no_job_behind(cluster3: LocalCluster) -> None:
    script = "echo ready; sleep 63; echo never"
    proc = cluster3.popen(
        1,
        ["mosrun", "-E", "-2", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    (pid,) = mosrun_pids(script)
    wait_until(lambda: job_pids("sleep 63"), what="the job's sleep there")
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    wait_until(lambda: not job_pids("sleep 63"), what="the job there to be killed")


def job_pids(command: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().replace(b"\0", b" ").strip() == command.encode():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_a_batch_jobs_job_id_is_its_mosruns(cluster3: LocalCluster) -> None:
    script = "echo ready; exec sleep 64"
    proc = cluster3.popen(
        1,
        ["mosrun", "-J7", "-E", "-2", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    (pid,) = mosrun_pids(script)
    listed = [line.split()[:3] for line in run(cluster3, ["mosps", "-J7"]).stdout.splitlines()]
    assert [pid_user_job[0::2] for pid_user_job in listed[1:]] == [[str(pid), "7"]], listed
    assert run(cluster3, ["moskillall", "-J8"]).returncode in (0, 1)
    assert proc.poll() is None  # another job's kill leaves it alone
    assert run(cluster3, ["moskillall", "-J7"]).returncode == 0
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM


def test_migrate_says_a_batch_job_stays_where_it_runs(cluster3: LocalCluster) -> None:
    script = "echo ready; exec sleep 66"
    proc = cluster3.popen(
        1,
        ["mosrun", "-E", "-2", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    (pid,) = mosrun_pids(script)
    try:
        for action in ("3", "home", "checkpoint"):
            done = run(cluster3, ["migrate", str(pid), action])
            assert done.returncode == 1
            assert done.stderr == (
                f"migrate: {pid}: process {pid} is a batch job running on node2: "
                "it cannot be migrated or checkpointed\n"
            )
        assert proc.poll() is None
    finally:
        os.kill(pid, signal.SIGTERM)
        proc.communicate(timeout=60)


def node_status(cluster: LocalCluster) -> dict[str, Any]:
    done = run(cluster, ["mosctl", "status", "--json"])
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def queued_commands(cluster: LocalCluster) -> list[list[str]]:
    done = run(cluster, ["mosq", "list", "--json"])
    assert done.returncode == 0, done.stderr
    return [entry["command"] for entry in json.loads(done.stdout)]


@pytest.mark.parametrize("kind", ["-E", "-M"])
def test_q_queues_the_whole_batch_job_until_a_slot_is_free(
    cluster3: LocalCluster, kind: str
) -> None:
    """The manual: -q queues the whole mosrun command; a batch job's too."""
    marker = f"/tmp/queued-batch{kind}"
    cluster3.node_path(2, marker).unlink(missing_ok=True)
    slots = node_status(cluster3)["queue_slots"]
    blockers = [
        cluster3.popen(
            1,
            ["mosrun", "-q", "cat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(slots)
    ]
    try:
        wait_until(lambda: node_status(cluster3)["queue_running"] == slots, what="every slot taken")
        script = f"echo ran > {marker}; echo out"
        job = cluster3.popen(
            1,
            ["mosrun", kind, "-2", "-q", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(
            lambda: queued_commands(cluster3) == [["sh", "-c", script]],
            what="the batch job in node 1's queue",
        )
        assert job.poll() is None and not cluster3.node_path(2, marker).exists()
    finally:
        for blocker in blockers:
            assert blocker.stdin is not None
            blocker.stdin.close()  # cat ends: its slot is free
    out, err = job.communicate(timeout=120)
    assert (job.returncode, out, err) == (0, "out\n", "")
    assert cluster3.node_path(2, marker).read_text() == "ran\n"
    for blocker in blockers:
        assert blocker.wait(timeout=60) == 0
