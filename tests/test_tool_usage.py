"""Every command's bad command line and --help, as installed commands (real processes).

A bad command line is one line on stderr naming what was wrong, status 125 (as
mosrun's), nothing on stdout; --help prints the help on stdout, status 0.  mosrun's
--help is the synopsis of the one grammar (mosix.arguments), which must name every
option the parser takes and no other.
"""

from __future__ import annotations

import string
import subprocess

import pytest

from mosix.arguments import SYNOPSIS_SECTIONS, UsageError, parse, synopsis

TOOLS = ["mosrun", "mosenv", "native", "migrate", "mosps", "mosq", "moskillall", "mosctl", "mosixd"]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["mosq", "abort", "-5"], "mosq abort: No such option: -5"),
        (["mosq", "abort", "x"], "mosq: x: not a process ID (-j for a job)"),
        (["mosq"], "mosq: no command given (mosq --help lists them)"),
        (["mosq", "bogus"], "mosq: No such command 'bogus'."),
        (["mosps", "--bogus"], "mosps: No such option: --bogus"),
        (["mosps", "-J", "x"], "mosps: -J: 'x' is neither a number nor a token"),
        (["mosctl"], "mosctl: no command given (mosctl --help lists them)"),
        (["mosctl", "whois", "1", "2"], "mosctl whois: Got unexpected extra argument"),
        (["mosctl", "setspeed"], "mosctl setspeed: Missing argument"),
        (["migrate", "1", "2", "3"], "migrate: Got unexpected extra argument"),
        (["migrate", "x", "home"], "migrate: x: not a process ID"),
        (["moskillall", "--bogus"], "moskillall: No such option: --bogus"),
        (["mosixd", "--ready-fd", "x"], "mosixd: Invalid value for "),
        (["native", "-x"], "native: -x: unknown option (native takes no options)"),
        (["mosrun", "--bogus", "true"], "mosrun: --bogus: unknown option"),
    ],
)
def test_a_bad_command_line_is_one_line_and_125(argv: list[str], line: str) -> None:
    result = run(*argv)
    assert result.returncode == 125, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(line), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_every_command_has_help(tool: str) -> None:
    result = run(tool, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert "sage" in result.stdout.splitlines()[0] + result.stdout  # usage / Usage


@pytest.mark.parametrize("tool", ["mosrun", "mosenv"])
def test_mosrun_help_is_the_grammars_synopsis(tool: str) -> None:
    result = run(tool, "--help")
    assert (result.returncode, result.stdout, result.stderr) == (0, synopsis(tool), "")
    assert run(tool, "-b", "--help").stdout == synopsis(tool)  # among the options too


def test_minus_h_is_still_the_home_node_and_help_after_the_program_is_its_own() -> None:
    assert run("mosrun", "-h", "sh", "-c", "exit 3").returncode == 3
    echoed = run("mosrun", "sh", "-c", 'echo "$1"', "sh", "--help")
    assert (echoed.returncode, echoed.stdout) == (0, "--help\n")


def accepted(letter: str) -> bool:
    """Whether the parser takes -{letter} as an option (with a typical argument)."""
    for word in (f"-{letter}", f"-{letter}1", f"-{letter}/x"):
        try:
            parse([word, "true"])
            return True
        except UsageError as e:
            if not str(e).endswith("unknown option"):
                return True  # known, only its argument was wrong
    return False


def test_the_synopsis_names_every_option_the_parser_takes_and_no_other() -> None:
    listed = {
        words[1]
        for _, options in SYNOPSIS_SECTIONS
        for words, _ in options
        if words[1] not in "-{"  # --help; -{n} and -{a.b.c.d}: the digits below
    }
    taken = {c for c in string.ascii_letters if accepted(c)}
    assert listed == taken
    assert all(accepted(d) for d in "123456789")
