"""The commands' quick paths (mosix.commands), as installed commands (real processes).

``TOOL --help`` prints the text generated from the command's own parser
(mosix.help_text) without importing that parser (typer, for the tools), byte for byte
what the parser prints; a terminal narrower than the text gets the parser's own
rendering.  ``migrate PID TARGET`` sends its request without importing typer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.agents import Agent
from support.waiting import wait_until

from mosix import help_text
from mosix.tools import help_pages

BIN = Path(sys.executable).parent
# each command and the module whose main() is its parser (the path before mosix.commands)
PARSERS = {
    "mosrun": ("mosix.cli", "mosrun_main"),
    "mosenv": ("mosix.cli", "mosenv_main"),
    "native": ("mosix.cli", "native_main"),
    "migrate": ("mosix.tools.migrate", "main"),
    "mosps": ("mosix.tools.mosps", "main"),
    "mosq": ("mosix.tools.mosq", "main"),
    "moskillall": ("mosix.tools.moskillall", "main"),
    "mosctl": ("mosix.tools.mosctl", "main"),
    "mosmon": ("mosix.tools.mosmon", "main"),
    "mosixd": ("mosix.tools.mosixd", "main"),
    "mosix-testcluster": ("mosix.testcluster.cli", "main"),
    "mosix-slurm": ("mosix.slurm.cli", "main"),
}
HELPS = [(tool, "--help") for tool in PARSERS] + [
    (tool, "-h") for tool in PARSERS if tool not in ("mosrun", "mosenv", "native")
]


def imported(stderr: str) -> set[str]:
    """The modules a ``python -X importtime`` run imported."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def command(
    *argv: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The installed command, with the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return result, imported(result.stderr)


def parser(tool: str, option: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    module, function = PARSERS[tool]
    code = f"import sys; sys.argv[0] = {tool!r}; from {module} import {function}; {function}()"
    return subprocess.run(
        [sys.executable, "-c", code, option], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(("tool", "option"), HELPS)
def test_help_is_the_parsers_own_without_the_parser(tool: str, option: str) -> None:
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    quick, modules = command(tool, option, env=env)
    slow = parser(tool, option, env)
    assert (quick.returncode, slow.returncode) == (0, 0), (quick.stderr, slow.stderr)
    if help_pages.renderer() == help_text.RENDERED_WITH:  # another typer renders otherwise
        assert quick.stdout == slow.stdout
    else:
        assert quick.stdout.split()[:2] == slow.stdout.split()[:2]  # the same usage line
    assert "typer" not in modules
    assert {m for m in modules if m.split(".")[0] == "mosix"} == {
        "mosix",
        "mosix.commands",
        "mosix.exits",
        "mosix.help_text",
    }


def test_a_narrow_terminal_gets_the_parsers_rendering() -> None:
    env = dict(os.environ, COLUMNS="60")
    quick, modules = command("migrate", "--help", env=env)
    slow = parser("migrate", "--help", env)
    wide = parser("migrate", "--help", dict(os.environ, COLUMNS="80"))
    assert quick.stdout == slow.stdout != wide.stdout
    assert "typer" in modules


def test_migrate_pid_checkpoint_without_typer(agent: Agent, agent_base: Path) -> None:
    program = agent.spawn(
        "mosrun",
        f"-C{agent_base}/ck",
        "sleep",
        "60",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: Path(f"/proc/{program.pid}/comm").read_text() == "sleep\n")
    done, modules = command("migrate", str(program.pid), "checkpoint", env=agent.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{program.pid}: checkpoint 1 written to {agent_base}/ck.1\n"
    assert (agent_base / "ck.1").stat().st_size > 0
    assert "typer" not in modules
    refused, modules = command("migrate", "1", "checkpoint", env=agent.env)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert [line for line in refused.stderr.splitlines() if line.startswith("migrate:")] == [
        "migrate: 1: process 1 does not run under mosrun"
    ]
    assert "typer" not in modules


def test_importing_the_protocol_builds_no_message() -> None:
    """The messages become dataclasses when used: a command pays for those it sends."""
    code = (
        "import mosix.protocol as p\n"
        "def built():  # the classes built so far\n"
        "    found = p.MESSAGES.values()\n"
        "    return sorted(c.OP for c in found if '__dataclass_fields__' in c.__dict__)\n"
        "print(built())\n"
        "p.encode_message(p.Done(count=1))\n"
        "print(built())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.splitlines() == ["[]", "['done']"], result.stderr


def test_every_message_is_a_frozen_dataclass_once_asked() -> None:
    from dataclasses import FrozenInstanceError, fields, is_dataclass

    from mosix import protocol

    for cls in protocol.MESSAGES.values():
        assert is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        names = [f.name for f in fields(cls)]
        assert "OP" not in names and len(set(names)) == len(names)
    done = protocol.Done(count=2)
    assert done == protocol.Done(count=2) and hash(done) == hash(protocol.Done(count=2))
    with pytest.raises(FrozenInstanceError):
        done.count = 3  # type: ignore[misc]
    assert protocol.decode_message(protocol.encode_message(done)[4:]) == done
