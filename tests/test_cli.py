"""mosrun, mosenv, native and the admin tools as installed commands (real processes)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

TOOLS = ["mosrun", "mosenv", "native", "migrate", "mosps", "mosq", "moskillall", "mosctl", "mosixd"]


def run(
    *argv: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def one_line_error(result: subprocess.CompletedProcess[str], prog: str = "mosrun") -> str:
    """The single stderr line of a failed mosrun, without its 'mosrun: ' prefix."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prog}: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0][len(prog) + 2 :]


@pytest.mark.parametrize("tool", TOOLS)
def test_every_command_is_installed(tool: str) -> None:
    assert shutil.which(tool), f"{tool} is not on PATH: install the package with 'pip install .'"


def test_mosrun_runs_a_program_and_passes_its_output() -> None:
    result = run("mosrun", "-b", "sh", "-c", "cat; echo done", stdin="hello\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello\ndone\n", "")


@pytest.mark.parametrize("status", [0, 1, 7, 125, 126, 127, 255])
def test_exit_status_passes_through(status: int) -> None:
    assert run("mosrun", "sh", "-c", f"exit {status}").returncode == status


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGSEGV])
def test_death_signal_passes_through(sig: signal.Signals) -> None:
    result = run("mosrun", "sh", "-c", f"kill -{sig.name[3:]} $$")
    assert result.returncode == -sig


def test_mosrun_is_the_program_so_dollar_bang_is_its_pid() -> None:
    script = 'mosrun sh -c \'echo "inner $$"\' & echo "outer $!"; wait'
    result = run("sh", "-c", script)
    words = dict(line.split() for line in result.stdout.splitlines())
    assert words["inner"] == words["outer"], result.stdout


def test_a_signal_sent_to_mosrun_reaches_the_program() -> None:
    program = (
        "import signal, sys\n"
        "signal.signal(signal.SIGUSR1, lambda *a: (print('got usr1', flush=True), sys.exit(3)))\n"
        "print('ready', flush=True)\n"
        "signal.pause()\n"
    )
    proc = subprocess.Popen(
        ["mosrun", sys.executable, "-c", program], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGUSR1)
    assert proc.stdout.read() == "got usr1\n"
    assert proc.wait(timeout=30) == 3


def test_sigpipe_is_default_in_the_program() -> None:
    # Python ignores SIGPIPE; exec would pass that on unless mosrun resets it.
    result = run("sh", "-c", "mosrun yes | head -n 2; echo ${PIPESTATUS:-}")
    assert result.stdout.startswith("y\ny\n")
    assert "Broken pipe" not in result.stderr


def test_z_makes_arguments_begin_at_zero() -> None:
    result = run("mosrun", "-z", "sh", "my-name", "-c", 'echo "$0"')
    assert result.stdout == "my-name\n"
    result = run("mosrun", "sh", "-c", 'echo "$0"', "zero")
    assert result.stdout == "zero\n"


def test_program_not_found_is_127() -> None:
    result = run("mosrun", "no-such-program-here")
    assert result.returncode == 127
    assert one_line_error(result) == "no-such-program-here: No such file or directory"


def test_program_not_runnable_is_126(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "not-executable")
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    result = run("mosrun", path)
    assert result.returncode == 126
    assert one_line_error(result) == f"{path}: Permission denied"
    result = run("mosrun", str(tmp_path))
    assert result.returncode == 126


def test_script_without_shebang_runs_with_the_shell(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "plain-script")
    with open(path, "w") as f:
        f.write('echo from-script "$1"\n')
    os.chmod(path, 0o755)
    result = run("mosrun", path, "arg")
    assert (result.returncode, result.stdout) == (0, "from-script arg\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-X/etc/x", "true"], "-X: directory cannot be within /etc"),
        (["-Xrel", "true"], "-X: directory must start with '/'"),
        (["-d20000", "true"], "-d: the decay must be a whole number from 0 to 10000"),
        (["-S0", "cmds"], "-S0: maxjobs must be a whole number from 1 to 30000"),
        (
            ["-Rfile", "-e"],
            "-e: program options are not permitted with -R (they are recovered "
            "from the checkpoint)",
        ),
        (["-b", "-h", "true"], "-h: conflicts with -b (give one placement)"),
        (
            ["-Dsoon", "true"],
            "-Dsoon: 'soon' is not a time: use DD:HH:MM, HH:MM, DDd, HHh, MMm, "
            "DDdHHhMMm, DDdHHh, DDdMMm or HHhMMm",
        ),
        (["-Rf", "-O1"], "-O1: '1' is not fd=file"),
        (["-j3-1", "true"], "-j3-1: range '3-1' ends before it begins"),
        (["-Y", "true"], "-Y: unknown option"),
        ([], "no program given"),
        (
            ["-Jno-such-token", "true"],
            "-Jno-such-token: 'no-such-token' is neither a number nor a token in ~/.jobids",
        ),
    ],
)
def test_bad_input_is_one_line_and_125(argv: list[str], message: str) -> None:
    result = run("mosrun", *argv)
    assert result.returncode == 125
    assert one_line_error(result) == message
    assert result.stdout == ""


def test_mosenv_takes_the_same_arguments() -> None:
    assert run("mosenv", "-e", "sh", "-c", "exit 4").returncode == 4
    result = run("mosenv", "-X/proc", "true")
    assert result.returncode == 125
    assert one_line_error(result, "mosenv") == "-X: directory cannot be within /proc"


def test_job_token_from_home_jobids(tmp_path: object) -> None:
    home = str(tmp_path)
    with open(os.path.join(home, ".jobids"), "w") as f:
        f.write("42 nightly\n")
    env = dict(os.environ, HOME=home)
    result = run("mosrun", "-Jnightly", "sh", "-c", 'echo "$MOSIX_INHERIT"', env=env)
    assert result.returncode == 0, result.stderr
    assert "-J42" in result.stdout.split()


def test_children_and_inner_mosrun_inherit_the_manuals_list() -> None:
    inner = "mosrun -l -u sh -c 'echo \"$MOSIX_INHERIT\"'"
    result = run(
        "mosrun", "-G3", "-L", "-m100", "-w", "-J7", "-C/tmp/ck", "-N2", "-A5", "sh", "-c", inner
    )
    words = result.stdout.split()
    assert result.returncode == 0, result.stderr
    # -G -m -J kept from the outer mosrun; -l and -u overridden; -C -N -A never inherited
    assert {"-G3", "-m100", "-J7", "-l", "-u"} <= set(words)
    assert not any(w.startswith(("-C", "-N", "-A", "-L", "-w")) for w in words)


def test_remote_placement_needs_the_cluster_unless_forced() -> None:
    result = run("mosrun", "-rno-such-node", "true")
    assert result.returncode == 125
    assert one_line_error(result) == (
        "-rno-such-node: no such node in this cluster (-F starts the program here instead)"
    )
    assert run("mosrun", "-F", "-rno-such-node", "true").returncode == 0
    assert run("mosrun", "-1", "true").returncode == 0  # this node is node 1
    assert run("mosrun", "-rlocalhost", "true").returncode == 0
    assert run("mosrun", "-127.0.0.1", "true").returncode == 0


def own_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback, as the kernel lists them."""
    from pyroute2 import IPRoute

    with IPRoute() as route:
        found = [str(a.get_attr("IFA_ADDRESS")) for a in route.get_addr(family=socket.AF_INET)]
    return [a for a in found if not a.startswith("127.")]


def test_an_address_of_this_machine_is_this_node() -> None:
    """-{a.b.c.d} on the one-node default: any of this machine's addresses is here."""
    addresses = own_addresses()
    if not addresses:
        pytest.skip("this machine has no address but loopback")
    for address in addresses:
        result = run("mosrun", f"-{address}", "true")
        assert result.returncode == 0, (address, result.stderr)
    elsewhere = "192.0.2.254"  # TEST-NET-1: documentation only, never this machine's
    assert elsewhere not in addresses
    result = run("mosrun", f"-{elsewhere}", "true")
    assert result.returncode == 125
    assert one_line_error(result).startswith(f"-{elsewhere}: no such node in this cluster")


@pytest.mark.parametrize("tool", ["migrate", "mosps", "mosq", "moskillall", "mosctl", "mosixd"])
def test_admin_tools_have_help(tool: str) -> None:
    result = run(tool, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_moskillall_turns_sigstop_into_sigtstp() -> None:
    from mosix.tools.moskillall import signal_number

    assert signal_number("STOP") == signal.SIGTSTP
    assert signal_number("19") == signal.SIGTSTP
    assert signal_number("KILL") == signal.SIGKILL
    assert signal_number("sigterm") == signal.SIGTERM


def test_moskillall_bad_signal_is_one_line() -> None:
    result = run("moskillall", "-NOPE")
    assert result.returncode == 125
    assert one_line_error(result, "moskillall") == "-NOPE: no such signal"


def test_native_outside_the_discipline_runs_the_program() -> None:
    result = run("native", "sh", "-c", "exit 5")
    assert result.returncode == 5
    result = run("native")
    assert result.returncode == 125
    assert one_line_error(result, "native") == "no program given"
