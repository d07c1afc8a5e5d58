"""Any bytes as arguments and file names: the program gets exactly the bytes given.

Real agent, real mosrun, a real program that prints its argv in hex: run
directly, queued (-q: re-executed as mosqueue), as a line of -S, and after a
checkpoint (to a file whose name is not UTF-8) and mosrun -R; as root and as
an unprivileged user.  No traceback anywhere; the program's status passes
through.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import Agent, as_user
from support.waiting import wait_until

WORDS = [b"caf\xe9", b"\xff\xfe", b"\x1b[31mred", "é".encode(), b"-z", b"a b"]
STATUS = 7
USER = "mosixbytes1"

HEX_ARGV = """
import os, sys
if sys.argv[1:2] == ["--pause"]:
    print("paused", flush=True)
    sys.stdin.readline()
    del sys.argv[1]
print(" ".join(os.fsencode(word).hex() for word in sys.argv[1:]), flush=True)
sys.exit(7)
"""


def hexed(words: list[bytes]) -> bytes:
    return b" ".join(w.hex().encode() for w in words) + b"\n"


@pytest.fixture
def hexprog(agent_base: Path) -> list[str]:
    script = agent_base / "hexargv.py"
    script.write_text(HEX_ARGV)
    script.chmod(0o644)
    return [sys.executable, "-P", str(script)]


@pytest.fixture(scope="module")
def user() -> Iterator[str]:
    """An unprivileged user that can run this Python (traversal of private homes on the way)."""
    opened = []
    for d in Path(sys.executable).resolve().parents:
        mode = d.stat().st_mode
        if not mode & stat.S_IXOTH:
            opened.append((d, mode))
            d.chmod(mode | stat.S_IXOTH)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", USER], check=True)
    try:
        yield USER
    finally:
        subprocess.run(["userdel", USER], check=False)
        for d, mode in reversed(opened):
            d.chmod(mode & 0o7777)


def run(
    agent: Agent, argv: list[str | bytes], user: str | None = None, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    words = as_user(user, tuple(os.fsdecode(w) for w in argv))
    result: subprocess.CompletedProcess[bytes] = subprocess.run(
        words,
        capture_output=True,
        env=agent.env,
        timeout=60,
        **kw,  # type: ignore[arg-type]
    )
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    return result


@pytest.mark.parametrize("who", ["root", "user"])
def test_the_program_gets_the_exact_bytes(
    agent: Agent, hexprog: list[str], who: str, request: pytest.FixtureRequest
) -> None:
    name = None if who == "root" else request.getfixturevalue("user")
    result = run(agent, ["mosrun", *hexprog, *WORDS], user=name)
    assert (result.returncode, result.stdout) == (STATUS, hexed(WORDS)), result.stderr
    result = run(agent, ["mosenv", *hexprog, *WORDS], user=name)
    assert (result.returncode, result.stdout) == (STATUS, hexed(WORDS)), result.stderr


def test_mosps_lists_a_program_with_non_utf8_arguments(agent: Agent, hexprog: list[str]) -> None:
    p = agent.spawn("mosrun", *hexprog, "--pause", *map(os.fsdecode, WORDS), stdin=subprocess.PIPE)
    wait_until(lambda: b"caf\\xe9" in run(agent, ["mosps"]).stdout, what="mosps to list it")
    assert p.stdin is not None
    p.stdin.write("\n")
    p.stdin.close()
    assert p.wait(timeout=60) == STATUS


@pytest.mark.parametrize("who", ["root", "user"])
def test_a_queued_program_gets_the_exact_bytes(
    agent: Agent, hexprog: list[str], who: str, request: pytest.FixtureRequest
) -> None:
    name = None if who == "root" else request.getfixturevalue("user")
    result = run(agent, ["mosrun", "-q", *hexprog, *WORDS], user=name)
    assert (result.returncode, result.stdout) == (STATUS, hexed(WORDS)), result.stderr


def test_a_batch_line_runs_with_its_bytes(agent: Agent, hexprog: list[str]) -> None:
    commands = Path(agent.run_dir.parent) / b"commands-\xe9".decode(errors="surrogateescape")
    failed = Path(agent.run_dir.parent) / "failed"
    line = " ".join(hexprog).encode() + b" caf\xe9 \xff '\x1b[1m'\n"
    commands.write_bytes(line + b"false \xfe\n")
    result = run(agent, ["mosrun", "-S2", f"{commands},{failed}"])
    assert result.stdout == hexed([b"caf\xe9", b"\xff", b"\x1b[1m"]), result.stderr
    assert failed.read_bytes() == line + b"false \xfe\n"  # both failed: status 7 and 1
    result = run(agent, ["mosrun", "-q", "-S1", str(commands)])
    assert result.stdout == hexed([b"caf\xe9", b"\xff", b"\x1b[1m"]), result.stderr


def test_a_checkpoint_to_a_non_utf8_name_recovers_with_the_exact_bytes(
    agent: Agent, hexprog: list[str]
) -> None:
    work = agent.run_dir.parent
    base = os.fsdecode(bytes(work) + b"/ck\xe9\x1b[2J")
    p = agent.spawn(
        "mosrun",
        f"-C{base}",
        *hexprog,
        "--pause",
        *map(os.fsdecode, WORDS),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert p.stdout is not None
    assert p.stdout.readline() == "paused\n"
    result = run(agent, ["migrate", str(p.pid), "checkpoint"])
    image = os.fsencode(base) + b".1"
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{p.pid}: checkpoint 1 written to ".encode() + shown_bytes(image)
    assert os.path.exists(image)
    p.kill()
    p.wait()
    inspect = run(agent, ["mosrun", b"-I" + image])
    assert inspect.returncode == 0 and b"\x1b" not in inspect.stdout, inspect
    recovered = run(agent, ["mosrun", b"-R" + image], input=b"\n")
    assert (recovered.returncode, recovered.stdout) == (STATUS, hexed(WORDS)), recovered.stderr


def shown_bytes(name: bytes) -> bytes:
    from mosix.display import shown

    return shown(name).encode() + b"\n"


def test_a_missing_program_with_a_non_utf8_name_is_127_in_one_line(agent: Agent) -> None:
    result = run(agent, ["mosrun", b"/nonexistent/\xe9\x1b[2J"])
    assert result.returncode == 127
    assert result.stderr.count(b"\n") == 1 and b"\x1b" not in result.stderr, result.stderr
