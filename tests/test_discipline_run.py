"""The discipline on real programs: real filters, real guard, real shim (installed mosrun)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from discipline_helpers import (
    KILLED_BY_GUARD,
    TIMEOUT,
    Probes,
    build_probes,
    installed_native_dir,
    mosrun,
    mosrun_path,
    run,
    unsupported_message,
)

KINDS = ["dynamic", "static"]
UNSUPPORTED = {  # probe call name -> (system call, number)
    "personality": ("personality", 135),
    "raw-personality": ("personality", 135),  # syscall(2), from libc's text
    "acct": ("acct", 163),
    "sched_setaffinity": ("sched_setaffinity", 203),
}
ENOSYS = 38


@pytest.fixture(scope="session")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Probes:
    return build_probes(tmp_path_factory.mktemp("cprogs"))


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# ---------------------------------------------------------------- the modes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", sorted(UNSUPPORTED))
def test_default_kills_with_a_message_naming_the_call(probes: Probes, kind: str, call: str) -> None:
    name, nr = UNSUPPORTED[call]
    result = mosrun(probes.get(kind), "call", call)
    assert result.returncode == KILLED_BY_GUARD, result
    assert "alive" not in result.stdout
    (message,) = lines(result.stderr)
    assert re.fullmatch(
        rf"mosrun: probe(-static)?\[\d+\]: {re.escape(unsupported_message(name, nr, True))}",
        message,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", sorted(UNSUPPORTED))
def test_e_fails_the_call_with_enosys_silently(probes: Probes, kind: str, call: str) -> None:
    result = mosrun("-e", probes.get(kind), "call", call)
    assert result.returncode == 0, result
    assert lines(result.stdout) == [f"{call}: ret=-1 errno={ENOSYS}", "alive"]
    assert result.stderr == ""


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", sorted(UNSUPPORTED))
def test_w_warns_and_fails_the_call_with_enosys(probes: Probes, kind: str, call: str) -> None:
    name, nr = UNSUPPORTED[call]
    result = mosrun("-w", probes.get(kind), "call", call)
    assert result.returncode == 0, result
    assert lines(result.stdout) == [f"{call}: ret=-1 errno={ENOSYS}", "alive"]
    assert unsupported_message(name, nr, False) in result.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_u_after_e_kills_again(probes: Probes, kind: str) -> None:
    assert mosrun("-e", "-u", probes.get(kind), "call", "acct").returncode == KILLED_BY_GUARD


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("mode", "status"), [("-u", 137), ("-e", 0), ("-w", 0)])
def test_grandchildren_are_under_the_discipline(
    probes: Probes, kind: str, mode: str, status: int
) -> None:
    """Filters survive fork and exec: a program two shells down (dash is dynamic)."""
    script = f"sh -c '{probes.get(kind)} call acct; echo status=$?'"
    result = mosrun(mode, "sh", "-c", script)
    assert result.returncode == 0, result
    assert f"status={status}" in result.stdout
    assert ("alive" in result.stdout) == (status == 0)
    assert ("unsupported system call acct (163)" in result.stderr) == (mode != "-e")


@pytest.mark.parametrize("kind", KINDS)
def test_inner_mosrun_changes_the_mode_both_ways(probes: Probes, kind: str) -> None:
    prog = probes.get(kind)
    inner_u = mosrun("-e", "sh", "-c", f"{mosrun_path()} -u {prog} call acct; echo status=$?")
    assert "status=137" in inner_u.stdout, inner_u
    inner_e = mosrun("-u", "sh", "-c", f"{mosrun_path()} -e {prog} call acct; echo status=$?")
    assert "status=0" in inner_e.stdout, inner_e
    assert "acct: ret=-1 errno=38" in inner_e.stdout


# ------------------------------------------------ no escape from the handler


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["sigsys-libc", "sigsys-raw", "block-libc", "block-raw"])
def test_own_sigsys_handler_or_blocking_does_not_escape_the_kill(
    probes: Probes, kind: str, how: str
) -> None:
    result = mosrun(probes.get(kind), how, "raw-personality")
    assert result.returncode == KILLED_BY_GUARD, result
    assert "own handler ran" not in result.stdout
    assert "alive" not in result.stdout
    assert unsupported_message("personality", 135, True) in result.stderr


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["sigsys-libc", "sigsys-raw", "block-libc", "block-raw"])
def test_own_sigsys_handler_or_blocking_does_not_escape_the_warning(
    probes: Probes, kind: str, how: str
) -> None:
    result = mosrun("-w", probes.get(kind), how, "raw-personality")
    assert result.returncode == 0, result
    assert "own handler ran" not in result.stdout
    assert "raw-personality: ret=-1 errno=38" in result.stdout
    assert unsupported_message("personality", 135, False) in result.stderr


def test_libc_sees_its_own_sigsys_settings(probes: Probes) -> None:
    """The shim's shadow: the program reads back what it set, though nothing changed."""
    handler = mosrun(str(probes.dynamic), "sigsys-libc", "clone3")
    assert "sigaction reports own handler: 1" in handler.stdout, handler
    blocked = mosrun(str(probes.dynamic), "block-libc", "clone3")
    assert "sigprocmask reports SIGSYS blocked: 1" in blocked.stdout, blocked


def test_blocked_sigsys_with_a_trapped_call_dies_of_sigsys(probes: Probes) -> None:
    """A trap while SIGSYS is blocked kills (the kernel resets it): no way around the shim."""
    result = mosrun(str(probes.dynamic), "block-raw", "mmap-shared-ro")
    assert result.returncode == -signal.SIGSYS, result
    assert "alive" not in result.stdout


# ------------------------------------------------------------- limited calls


@pytest.mark.parametrize("mode", ["-u", "-e", "-w"])
def test_read_only_shared_mapping_becomes_private(
    probes: Probes, tmp_path: Path, mode: str
) -> None:
    data = tmp_path / "data"
    data.write_text("hello\n")
    result = mosrun(mode, str(probes.dynamic), "mmap-ro", str(data))
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["mapping: r--p", "first byte: h"]
    assert result.stderr == ""
    native = run(str(probes.dynamic), "mmap-ro", str(data))
    assert lines(native.stdout) == ["mapping: r--s", "first byte: h"]


@pytest.mark.parametrize("mode", ["-u", "-e"])
def test_read_only_shared_mapping_fails_in_static_programs(
    probes: Probes, tmp_path: Path, mode: str
) -> None:
    data = tmp_path / "data"
    data.write_text("hello\n")
    result = mosrun(mode, str(probes.static), "mmap-ro", str(data))
    assert result.returncode == 0, result
    assert lines(result.stdout) == [f"mmap: errno={ENOSYS}"]


# Pinned (docs/SYSCALLS.md): they run, natively, in every mode; the process stays home.
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["-u", "-e", "-w"])
@pytest.mark.parametrize("call", ["mmap-shared-rw", "thread", "mlock"])
def test_pinned_calls_run_natively(probes: Probes, kind: str, mode: str, call: str) -> None:
    result = mosrun(mode, probes.get(kind), "call", call)
    assert result.returncode == 0, result
    assert lines(result.stdout) == [f"{call}: ret=0 errno=0", "alive"]
    assert result.stderr == ""


@pytest.mark.parametrize("kind", KINDS)
def test_fork_posix_spawn_and_system_work(probes: Probes, kind: str) -> None:
    result = mosrun(probes.get(kind), "spawn")
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["posix_spawn: ret=0 exit=3", "system: exit=4"]


@pytest.mark.parametrize("kind", KINDS)
def test_clone3_and_unknown_numbers_fail_with_enosys_even_by_default(
    probes: Probes, kind: str
) -> None:
    for call in ("clone3", "unknown"):
        result = mosrun(probes.get(kind), "call", call)
        assert result.returncode == 0, result
        assert lines(result.stdout) == [f"{call}: ret=-1 errno={ENOSYS}", "alive"]


def test_x32_system_calls_kill(probes: Probes) -> None:
    assert mosrun(str(probes.dynamic), "call", "x32").returncode == -signal.SIGSYS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["-u", "-e"])
def test_priority_of_the_caller_itself_is_fine(probes: Probes, kind: str, mode: str) -> None:
    result = mosrun(mode, probes.get(kind), "call", "prio-self")
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["prio-self: ret=0 errno=0", "alive"]


@pytest.mark.parametrize("kind", KINDS)
def test_priority_of_another_process_is_unsupported(probes: Probes, kind: str) -> None:
    result = mosrun(probes.get(kind), "call", "prio-parent")
    assert result.returncode == KILLED_BY_GUARD, result
    assert "unsupported system call getpriority (140)" in result.stderr


def test_sigstop_is_sent_as_sigtstp(probes: Probes) -> None:
    result = mosrun(str(probes.dynamic), "stop-self")
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["kill: ret=0 errno=0", "got: SIGTSTP"]


def test_sigstop_from_a_static_program_is_refused(probes: Probes) -> None:
    result = mosrun(str(probes.static), "stop-self")
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["kill: ret=-1 errno=1", "got: nothing"]


@pytest.mark.parametrize("kind", KINDS)
def test_open_files_limit_is_fixed_at_1024(probes: Probes, kind: str) -> None:
    result = mosrun(probes.get(kind), "nofile")
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["nofile: 1024 1024", "setrlimit: ret=-1 errno=1"]


def test_ulimit_n_in_bash_is_refused_not_killed() -> None:
    result = mosrun("bash", "-c", "ulimit -n; ulimit -n 100; echo rc=$?; ulimit -n")
    assert result.returncode == 0, result
    assert lines(result.stdout) == ["1024", "rc=1", "1024"]
    assert "Operation not permitted" in result.stderr


# ----------------------------------------------------------- ordinary programs

PIPELINE = "seq 1 20000 | sort -r | gzip -c | gunzip -c | sha256sum; seq 5 | sort -n | tr 1 x"
PYTHON = """
import multiprocessing, os, subprocess, sys
print(subprocess.run(["echo", "from echo"], capture_output=True, text=True).stdout.strip())
print(subprocess.check_output("printf 'from sh %s' $((6*7))", shell=True, text=True))
print(os.system("exit 3") >> 8)
def child(q_path):
    with open(q_path, "w") as f:
        f.write("from multiprocessing")
if __name__ == "__main__":
    path = sys.argv[1]
    p = multiprocessing.get_context("fork").Process(target=child, args=(path,))
    p.start(); p.join()
    print(p.exitcode, open(path).read())
    print(sorted(os.listdir("/proc/self/fd")) == sorted(os.listdir("/proc/self/fd")))
"""


def test_shell_pipeline_output_is_identical_to_native() -> None:
    native = run("bash", "-c", PIPELINE)
    disciplined = mosrun("bash", "-c", PIPELINE)
    assert native.returncode == disciplined.returncode == 0
    assert disciplined.stdout == native.stdout
    assert disciplined.stderr == native.stderr == ""


def test_python_with_subprocess_and_multiprocessing_is_identical_to_native(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(PYTHON)
    native = run("python3", str(script), str(tmp_path / "a"))
    disciplined = mosrun("python3", str(script), str(tmp_path / "b"))
    assert native.returncode == disciplined.returncode == 0, disciplined
    assert disciplined.stdout == native.stdout
    assert disciplined.stderr == ""


def test_stdin_and_stdout_pass_through() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    result = mosrun("cat", stdin=text)
    assert result.returncode == 0
    assert result.stdout == text


@pytest.mark.parametrize("status", [0, 3, 126])
def test_exit_status_passes_through(status: int) -> None:
    assert mosrun("sh", "-c", f"exit {status}").returncode == status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGSEGV])
def test_death_signal_passes_through(sig: signal.Signals) -> None:
    assert mosrun("sh", "-c", f"kill -{sig.name[3:]} $$").returncode == -sig


def test_background_pid_is_the_programs_own(probes: Probes) -> None:
    """`mosrun prog &`: $! is the program (exec in place, guard double-forked away)."""
    shell = subprocess.Popen(
        ["bash", "-c", f"{mosrun_path()} {probes.dynamic} wait-signal & echo bang $!; wait $!"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert shell.stdout is not None
    seen: dict[str, int] = {}
    while len(seen) < 2:  # the two lines come in either order
        words = shell.stdout.readline().split()
        seen[words[0]] = int(words[1])
    assert seen["bang"] == seen["pid"]
    cmdline = Path(f"/proc/{seen['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:2] == [str(probes.dynamic).encode(), b"wait-signal"]
    os.kill(seen["pid"], signal.SIGUSR1)
    assert shell.stdout.readline() == "got USR1\n"
    assert shell.wait(timeout=TIMEOUT) == 0


def test_signals_sent_to_mosrun_reach_the_program(probes: Probes) -> None:
    proc = subprocess.Popen(
        [mosrun_path(), str(probes.static), "wait-signal"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"pid {proc.pid} ready\n"
    proc.send_signal(signal.SIGUSR1)
    assert proc.stdout.readline() == "got USR1\n"
    assert proc.wait(timeout=TIMEOUT) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_guard_is_not_the_programs_child(probes: Probes, kind: str) -> None:
    result = mosrun(probes.get(kind), "children")
    assert lines(result.stdout) == ["waitpid: ret=-1 errno=10"]  # ECHILD


def start_time(proc_dir: Path) -> int:
    """Clock ticks after boot when the process started (/proc/PID/stat field 22)."""
    return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[19])


def test_the_guard_does_not_pass_for_a_mosix_process(probes: Probes) -> None:
    """The node agent finds MOSIX processes by MOSIX_INHERIT in /proc/PID/environ."""
    proc = subprocess.Popen(
        [mosrun_path(), str(probes.dynamic), "wait-signal"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"pid {proc.pid} ready\n"
    started = start_time(Path(f"/proc/{proc.pid}"))
    guards = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                (entry / "comm").read_text() == "mosix-guard\n"
                and (entry / "cmdline").read_bytes()  # alive: a zombie has no cmdline
                and start_time(entry) >= started  # ours (or as new)
            ):
                guards.append(entry)
        except (OSError, ValueError):
            continue  # gone meanwhile
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=TIMEOUT) == 0
    assert guards, "no live guard while a disciplined program ran"
    for guard in guards:
        with contextlib.suppress(OSError):
            assert b"MOSIX_INHERIT" not in (guard / "environ").read_bytes()
            assert (guard / "cmdline").read_bytes().rstrip(b"\0") == b"mosix-guard"


@pytest.mark.parametrize(("mode", "depth"), [("-u", 200), ("-e", 100), ("-e", 300)])
def test_deep_exec_chains_keep_the_discipline(probes: Probes, mode: str, depth: int) -> None:
    """Each dynamic exec stacks a shim filter; past the kernel's limit the base one serves."""
    result = mosrun(mode, str(probes.dynamic), "execchain", str(depth), "raw-personality")
    filters = int(re.search(r"Seccomp_filters:\s+(\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    assert filters >= min(depth, 100)
    if mode == "-u":
        assert result.returncode == KILLED_BY_GUARD, result
    else:
        assert result.returncode == 0, result
        assert "raw-personality: ret=-1 errno=38" in result.stdout


# ----------------------------------------------------------------- mosenv


def test_mosenv_passes_the_loader_variables() -> None:
    env = {**os.environ, "LD_LIBRARY_PATH": "/opt/x", "MALLOC_CHECK_": "3"}
    result = subprocess.run(
        ["mosenv", "env"], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result
    got = dict(line.split("=", 1) for line in lines(result.stdout) if "=" in line)
    assert got["LD_LIBRARY_PATH"] == "/opt/x"
    assert got["MALLOC_CHECK_"] == "3"
    assert not [k for k in got if k.startswith("MOSIX_SAVED")]
    assert got["LD_PRELOAD"].split(":")[0].endswith("libmosix_shim.so")


def test_a_set_id_launcher_restores_what_mosenv_saved(tmp_path: Path) -> None:
    """A setgid launcher runs in secure mode: the loader strips LD_*; the launcher puts back
    what mosenv saved (MOSIX_SAVED_*), and only that."""
    native = installed_native_dir()
    launcher = tmp_path / "mosix-exec"
    launcher.write_bytes((native / "mosix-exec").read_bytes())
    os.chown(launcher, 0, 65534)
    launcher.chmod(0o2755)  # setgid nogroup: egid != gid, so AT_SECURE
    base = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": "/stripped"}
    saved = {
        **base,
        "MOSIX_SAVED_ENV": "LD_LIBRARY_PATH",
        "MOSIX_SAVED_LD_LIBRARY_PATH": "/saved",
    }
    words = [str(launcher), "-m", "n", "-p", "mosenv", "--", "env", "env"]
    plain = subprocess.run(words, env=base, capture_output=True, text=True, timeout=TIMEOUT)
    restored = subprocess.run(words, env=saved, capture_output=True, text=True, timeout=TIMEOUT)
    assert "LD_LIBRARY_PATH" not in plain.stdout, "not in secure mode: the test proves nothing"
    assert "LD_LIBRARY_PATH=/saved" in lines(restored.stdout)
    assert "MOSIX_SAVED" not in restored.stdout


def test_launcher_failures_are_one_line_with_envs_statuses(tmp_path: Path) -> None:
    missing = mosrun("no-such-program-here")
    assert (missing.returncode, missing.stderr) == (
        127,
        "mosrun: no-such-program-here: No such file or directory\n",
    )
    script = tmp_path / "script"
    script.write_text("echo hi\n")
    denied = mosrun(str(script))
    assert (denied.returncode, denied.stderr) == (126, f"mosrun: {script}: Permission denied\n")
