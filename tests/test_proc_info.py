"""The /proc readers on real processes: one parser per file, bytes throughout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.waiting import wait_until

from mosix.cluster.load_vectors import runnable_tasks
from mosix.home_agent.native_start import groups_of
from mosix.sysinfo import proc_info

LONG = "x" * (100 * 1024)  # longer than one read (proc_info.READ_SIZE)
SCRIPT = f"sleep 60; : {LONG}"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    env = {"FIRST": "1", "MOSIX_INHERIT": "-e -j7", "LONG": LONG, "LAST": "end"}
    proc = subprocess.Popen(["sh", "-c", SCRIPT], env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_environ_first_middle_last_and_long(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    assert proc_info.initial_env(pid, "FIRST") == "1"
    assert proc_info.inherited_words(pid) == ["-e", "-j7"]
    assert proc_info.initial_env(pid, "LONG") == LONG
    assert proc_info.initial_env(pid, "LAST") == "end"
    assert proc_info.initial_env(pid, "IRST") is None  # names match whole
    assert proc_info.initial_env(pid, "ABSENT") is None
    assert proc_info.command(pid) == [b"sh", b"-c", SCRIPT.encode()]


def test_stat_and_status_of_a_process(sleeper: subprocess.Popen[bytes]) -> None:
    pid = sleeper.pid
    ticks = proc_info.start_ticks(pid)
    assert ticks is not None and ticks >= proc_info.start_ticks(os.getpid())  # type: ignore[operator]
    assert proc_info.alive(pid, ticks) and not proc_info.alive(pid, ticks + 1)
    assert proc_info.state_letter(pid) in ("S", "R", "D") and proc_info.exists(pid)
    assert not proc_info.is_checkpoint_copy(pid)
    assert proc_info.real_uid(pid) == os.getuid() and proc_info.real_gid(pid) == os.getgid()
    assert proc_info.comm(pid) == "sh"
    assert proc_info.status_value(pid, "PPid") == str(os.getpid())
    assert proc_info.status_fields(pid, ("Uid", "Threads")) == {
        "Uid": proc_info.status_fields(pid)["Uid"],  # type: ignore[index]
        "Threads": "1",
    }
    assert os.getpid() in proc_info.pids() and pid in proc_info.children(os.getpid())
    assert proc_info.net_namespace(pid) == proc_info.net_namespace("self")
    assert proc_info.under_discipline() is False


def test_a_gone_process_reads_as_none() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    pid = proc.pid
    assert proc_info.stat_fields(pid) is None and proc_info.status_fields(pid) is None
    assert proc_info.start_ticks(pid) is None and proc_info.real_uid(pid) is None
    assert proc_info.initial_env(pid, "PATH") is None and proc_info.command(pid) == []
    assert proc_info.comm(pid) is None and not proc_info.exists(pid)


def test_a_spinning_thread_counts_though_the_main_thread_sleeps() -> None:
    """The process's own state is its main thread's (sleeping in a read); the load
    counts each thread's (two spin, taking turns at the GIL)."""
    program = (
        "import sys, threading\n"
        "def spin():\n"
        "    while True: pass\n"
        "for _ in range(2): threading.Thread(target=spin, daemon=True).start()\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE)
    pid = str(proc.pid)
    try:
        wait_until(lambda: proc_info.status_value(pid, "Threads") == "3", what="three threads")
        wait_until(lambda: proc_info.state_letter(proc.pid) == "S", what="the main thread asleep")
        wait_until(lambda: runnable_tasks(pid) >= 1, what="a runnable thread")
        assert runnable_tasks(pid) <= 3
    finally:
        proc.kill()
        proc.wait()
    assert runnable_tasks(pid) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="setting supplementary groups needs root")
def test_native_starts_with_the_callers_supplementary_groups() -> None:
    proc = subprocess.Popen(["sleep", "60"], extra_groups=[1234, 5678])
    try:
        assert groups_of(proc.pid) == [1234, 5678]
    finally:
        proc.kill()
        proc.wait()
    assert groups_of(proc.pid) == []  # gone: none
