"""``native`` from under the discipline runs its program with the caller's umask,
resource limits, directory and environment (real agent, real shell, real programs),
and the agent takes none of them on the client's word."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from support.agents import Agent

from mosix.protocol import Refused, StartNative, decode_message, encode_message


def test_the_program_gets_the_callers_umask_limits_directory_and_environment(
    agent: Agent, tmp_path: Path
) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    script = (
        "umask 027; ulimit -S -c 12345; ulimit -S -t 4321; export NATIVE_PROBE=seen; "
        "cat /proc/$$/limits > caller.limits; "
        "native sh -c 'umask; pwd; echo $NATIVE_PROBE; cat /proc/self/limits > native.limits'"
    )
    result = agent.run("mosrun", "sh", "-c", script, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["0027", str(work), "seen"]
    caller = (work / "caller.limits").read_text()
    assert "4321" in caller  # the shell's own limits, as its children get them
    assert (work / "native.limits").read_text() == caller


def test_a_start_without_the_directory_is_refused(agent: Agent) -> None:
    """The caller's directory must come as a directory descriptor, never as a path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(agent.run_dir / "mosixd.sock"))
        sock.settimeout(30)
        frame = encode_message(StartNative(argv=[b"true"], env={}))
        with open("/etc/hostname", "rb") as not_a_directory:
            fds = [0, 1, 2, not_a_directory.fileno()]
            sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("4i", *fds))])
        header = sock.recv(4, socket.MSG_WAITALL)
        body = sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL)
    answer = decode_message(body)
    assert isinstance(answer, Refused)
    assert answer.error == "native: the caller's directory descriptor is not a directory"
