"""Text a user chose reaches other users' terminals escaped (mosix.display).

The property tests check the function; the others run the real tools against a
real agent: mosps and mosq list with escape sequences in a command line,
mosrun -I on an image whose file names and command hold them, and mosrun's
one-line errors that name a user's argument.
"""

from __future__ import annotations

import os
import subprocess
import unicodedata
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from support.agents import Agent, as_user
from support.waiting import wait_until

from mosix.display import shown, shown_words

ESC = b"\x1b"
ONE_LINE_ATTACK = "\x1b]0;owned\x07\x1b[2J\x9b1m"  # a title, clear screen, CSI (C1)
ATTACK = ONE_LINE_ATTACK + "\r\n"  # ... and a new line


def has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


@given(st.binary())
def test_any_bytes_come_out_without_control_characters(data: bytes) -> None:
    out = shown(data)
    assert not has_control(out)
    assert "\n" not in out and out.isprintable()
    out.encode()  # valid text: it can be written to any UTF-8 terminal


@given(st.text())
def test_any_text_comes_out_without_control_characters(text: str) -> None:
    out = shown(text)
    assert out.isprintable() and not has_control(out)
    assert shown(out) == out  # escaping twice changes nothing


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_printable_ascii_is_kept_as_it_is(text: str) -> None:
    assert shown(text) == text
    assert shown(text.encode()) == text


@given(st.binary())
def test_bytes_and_their_surrogateescape_text_are_shown_alike(data: bytes) -> None:
    assert shown(data) == shown(os.fsdecode(data))


def test_examples() -> None:
    assert shown(b"caf\xe9") == "caf\\xe9"
    assert shown("café") == "café"
    assert shown(b"\x1b[31mred") == "\\x1b[31mred"
    assert shown("\x9b1m") == "\\x9b1m"  # C1 CSI as a character
    assert shown(b"\xc2\x9b") == "\\x9b"  # ... and encoded in UTF-8
    assert shown(b"a\x7fb\tc\nd") == "a\\x7fb\\x09c\\x0ad"
    assert shown("\u202eevil") == "\\u202eevil"  # a bidi override
    assert shown_words([b"echo", b"caf\xe9"]) == "echo caf\\xe9"


# ------------------------------------------------------------- the tools


def no_escape(result: subprocess.CompletedProcess[bytes]) -> None:
    assert ESC not in result.stdout and ESC not in result.stderr, result
    assert b"\x9b" not in result.stdout and b"\x9b" not in result.stderr, result
    assert b"Traceback" not in result.stderr, result.stderr


def run_bytes(
    agent: Agent, *argv: str | bytes, user: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    words = as_user(user, tuple(os.fsdecode(a) for a in argv))
    return subprocess.run(words, capture_output=True, env=agent.env, timeout=60)


def test_mosps_shows_an_escape_sequence_in_a_command_line_escaped(agent: Agent) -> None:
    p = agent.spawn("mosrun", "sleep", "60", ATTACK, stderr=subprocess.DEVNULL)
    result = None

    def listed() -> bool:
        nonlocal result
        result = run_bytes(agent, "mosps", "-a")
        return str(p.pid).encode() in result.stdout

    wait_until(listed, what="mosps to list the program")
    assert result is not None
    no_escape(result)
    row = next(line for line in result.stdout.decode().splitlines() if str(p.pid) in line)
    assert row.endswith("sleep 60 " + shown(ATTACK)), row
    rows = result.stdout.decode().splitlines()[1:]
    assert all(line.split()[0].isdigit() for line in rows)  # no line was broken


def test_mosq_list_shows_a_queued_command_escaped(agent: Agent) -> None:
    agent.spawn("mosrun", "-q", "sleep", "60")  # takes the one slot
    wait_until(lambda: agent.queued_count() == 0 and running(agent), what="the first job to run")
    agent.spawn("mosrun", "-q", "true", ATTACK, os.fsdecode(b"caf\xe9"))
    wait_until(lambda: agent.queued_count() == 1, what="the second job to be queued")
    result = run_bytes(agent, "mosq", "list")
    assert result.returncode == 0, result.stderr
    no_escape(result)
    last = result.stdout.decode().splitlines()[-1]
    assert last.endswith(f"true {shown(ATTACK)} caf\\xe9"), last


def running(agent: Agent) -> bool:
    return b"sleep 60" in run_bytes(agent, "mosps").stdout


def test_mosrun_errors_naming_a_users_word_are_one_escaped_line(agent: Agent) -> None:
    for argv, status in (
        (["mosrun", "-" + ATTACK], 125),  # a bad option
        (["mosrun", "-X" + ATTACK], 125),
        (["mosrun", "-I/nonexistent/" + ATTACK], 125),
    ):
        result = run_bytes(agent, *argv)
        assert result.returncode == status, (argv, result)
        no_escape(result)
        assert result.stderr.count(b"\n") == 1, result.stderr


def test_mosrun_inspect_shows_names_from_a_crafted_image_escaped(tmp_path: Path) -> None:
    image = tmp_path / "crafted.ckpt"
    image.write_bytes(crafted_image(tmp_path))
    result = subprocess.run(["mosrun", f"-I{image}"], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    no_escape(result)
    text = result.stdout.decode()
    assert f"/evil{shown(ATTACK)}" in text  # the open file's name
    assert f"program: prog{shown(ONE_LINE_ATTACK)}caf\\xe9;" in text  # argv0
    assert f"directory: /cwd{shown(ATTACK)}" in text
    assert len(text.splitlines()) == 4  # three lines of heading, one file: no line broken


def crafted_image(tmp_path: Path) -> bytes:
    """A valid image whose open file's name, argv0 and directory hold escape sequences."""
    from ckpt_images import host_facts, tiny_image

    from mosix.ckpt import format as fmt

    image = tiny_image(host_facts(tmp_path))
    attack = ATTACK.encode()
    image.options = b"argv0=prog" + ONE_LINE_ATTACK.encode() + b"caf\xe9\n"
    image.cwd = b"/cwd" + attack
    path = b"/evil" + attack
    fields = {"fd": 3, "kind": fmt.FileKind.REGULAR, "flags": 0, "path_len": len(path)}
    image.files = [(fmt.Kind.FILE, fmt.FILE.pack(**fields) + path)]
    return image.encode()
