"""The commands' ``--help`` texts, rendered once by ``python -m mosix.generate`` into
mosix/help_text.py, so that ``TOOL --help`` prints them without importing typer.

Each text is what the command itself prints (mosrun's and mosenv's synopsis from the
grammar, native's from mosix.cli, the typer tools' from their applications), rendered
at click's widest, 80 columns: what a pipe or any terminal that wide gets.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import typer

from mosix import arguments
from mosix.codegen import py_banner
from mosix.tools.common import run

SOURCE = "mosix/tools/help_pages.py"
MODULE = "mosix/help_text.py"
COLUMNS = "80"


def typer_help(application: typer.Typer, tool: str) -> str:
    """What ``tool --help`` prints, at 80 columns."""
    out = io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = COLUMNS
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            run(application, tool, ["--help"])
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue()


def renderer() -> str:
    """The typer and click here: the texts are rendered by them, and another version
    renders some options otherwise (the pinned-lowest CI lane's)."""
    here = [f"typer {version('typer')}"]
    with contextlib.suppress(PackageNotFoundError):  # newer typers render without click
        here.append(f"click {version('click')}")
    return ", ".join(here)


def rendered_with(module_text: str) -> str:
    """The renderer a generated module's texts were rendered with ("" if none said)."""
    found = re.search(r'^RENDERED_WITH = "([^"]*)"$', module_text, re.MULTILINE)
    return found.group(1) if found else ""


def literal(text: str) -> str:
    """``text`` as a double-quoted Python string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def module_text(native_synopsis: str, tools: Mapping[str, typer.Typer]) -> str:
    texts = {
        "mosrun": arguments.synopsis("mosrun"),
        "mosenv": arguments.synopsis("mosenv"),
        "native": native_synopsis,
        **{tool: typer_help(application, tool) for tool, application in tools.items()},
    }
    lines = [
        py_banner(SOURCE),
        "# ruff: noqa: E501  (the texts' lines as the commands print them)",
        '"""Each command\'s ``--help`` text, as the command renders it (mosix.commands prints',
        'it without importing the command\'s parser)."""',
        "",
        f"RENDERED_WITH = {literal(renderer())}",
        "HELP: dict[str, str] = {",
    ]
    for tool, text in texts.items():
        lines.append(f"    {literal(tool)}: (")
        lines += [f"        {literal(line)}" for line in text.splitlines(keepends=True)]
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"
