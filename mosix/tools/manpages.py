"""The man pages of the commands (man/man1/*.1), made by ``python -m mosix.generate``.

Each page comes from what the command itself is made of, so it cannot say other
than the command does: mosrun's and mosenv's from the grammar's synopsis
(mosix.arguments), the typer tools' from their typer applications (each
command's and option's help), the ``--json`` schemas from mosix.tools.json_output.
Installed with the package into ``share/man/man1`` (pyproject.toml's data-files),
where ``man`` finds them beside a virtual environment's ``bin`` on PATH.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import typer
import typer.main

from mosix import arguments
from mosix.codegen import man_banner
from mosix.tools import json_output

SOURCE = "mosix/tools/manpages.py"
MAN_DIR = "man/man1"
SECTION = "1"
MANUAL = "MOSIX user-space commands"
VERSION = "mosix"
HIDDEN = {"install_completion", "show_completion", "help"}  # typer's own; said once below
JSON_SCHEMAS = {
    "mosps": (json_output.PROCESS,),
    "mosq": (json_output.QUEUE,),
    "mosctl": (json_output.STATUS, json_output.NODES),
}
TOOL_STATUS = (
    ("0", "done"),
    (
        "1",
        "not all of it was done: a process that did not move or was not signalled "
        "(migrate, moskillall), a node that is not in the cluster (mosctl whois); "
        "one line on stderr says which",
    ),
    (
        "125",
        "a bad command line, the node agent refused or could not be reached, or "
        "(mosmon) no terminal or one too small; "
        "one line on stderr names what was wrong",
    ),
)
MOSRUN_STATUS = (
    ("125", "a bad command line, or mosrun itself failed (one line on stderr)"),
    ("126", "the program was found but could not be run"),
    ("127", "the program was not found"),
    ("other", "the program's own exit status; killed by a signal, mosrun dies of it too"),
)
SEE_ALSO = (
    "mosrun",
    "mosenv",
    "native",
    "migrate",
    "mosps",
    "mosq",
    "moskillall",
    "mosctl",
    "mosmon",
    "mosixd",
    "mosix-slurm",
)


def lowered(summary: str) -> str:
    """A one-line summary as the NAME line's tail: its first word lower-cased, unless
    it is a name in capitals (MOSIX, CMD)."""
    first = summary.split(" ", 1)[0]
    return summary if first.isupper() else summary[0].lower() + summary[1:]


def roff(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line taken for a request."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in out.split("\n"))


def paragraphs(text: str) -> list[str]:
    lines = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines += [".PP", roff(" ".join(paragraph.split()))]
    return lines


def tagged(items: Iterable[tuple[str, str]], bold: bool = True) -> list[str]:
    lines = []
    for tag, text in items:
        lines += [".TP", f"{'.B' if bold else ''} {roff(tag)}".strip(), roff(text)]
    return lines


def header(name: str, summary: str) -> list[str]:
    return [
        man_banner(SOURCE),
        f'.TH {name.upper()} {SECTION} "" "{VERSION}" "{MANUAL}"',
        ".SH NAME",
        f"{roff(name)} \\- {roff(summary)}",
    ]


def footer(name: str, status: Sequence[tuple[str, str]]) -> list[str]:
    others = ", ".join(f"\\fB{roff(n)}\\fR({SECTION})" for n in SEE_ALSO if n != name)
    return [".SH EXIT STATUS", *tagged(status), ".SH SEE ALSO", others]


# ------------------------------------------------------------------ mosrun, mosenv, native

MOSRUN_TEXT = """
mosrun runs a program under the MOSIX discipline: the program and all its descendants
may migrate to other nodes of the cluster while their home node keeps their identity
(pid, parent, files, current directory, terminal) and serves the system calls they make
from afar.  mosrun becomes the program (same pid); options end at the program's name.

MOSIX options carry their argument attached to the letter (-r{host}, -G3, -Cfile); -d
and -X also take it as the next word.  -h is a placement (the home node), so the help is
--help.
"""
MOSENV_TEXT = """
mosenv is mosrun that keeps the LD_* and MALLOC_* variables in the program's environment;
it takes the same arguments.
"""


def grammar_page(name: str, summary: str, text: str) -> str:
    lines = header(name, summary)
    lines += [".SH SYNOPSIS", ".nf"]
    lines += [f"\\fB{roff(name)}\\fR {roff(line)}" for line in arguments.USAGE_LINES]
    lines += [".fi"]
    lines += [".SH DESCRIPTION", *paragraphs(text)]
    for title, options in arguments.SYNOPSIS_SECTIONS:
        lines += [f".SS {roff(title)}", *tagged(options)]
    lines += footer(name, MOSRUN_STATUS)
    return "\n".join(lines) + "\n"


def native_page() -> str:
    lines = header("native", "run a program outside the MOSIX discipline")
    lines += [".SH SYNOPSIS", ".B native", "program [args]...", ".SH DESCRIPTION"]
    lines += paragraphs(
        """native runs a program as plain Linux: from inside the discipline (a shell under
        mosrun), the node agent starts it outside and passes its exit status back.  It takes
        no options but --help."""
    )
    lines += footer("native", MOSRUN_STATUS)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the typer tools


def param_tag(param: Any, short: bool = False) -> str:
    """How the page names a parameter (``short``: in the synopsis, its first spelling)."""
    if param.param_type_name == "argument":
        return str(param.metavar or param.name.upper())
    words = param.opts[0] if short else ", ".join([*param.opts, *param.secondary_opts])
    return words if param.is_flag else f"{words} {param.name.upper()}"


def param_items(command: Any) -> list[tuple[str, str]]:
    items = [
        (param_tag(p), " ".join((getattr(p, "help", None) or "").split()))
        for p in command.params
        if p.name not in HIDDEN
    ]
    return [*items, ("-h, --help", "print the help and exit")]


def usage(name: str, command: Any) -> str:
    words = [name]
    for p in command.params:
        if p.name in HIDDEN:
            continue
        tag = param_tag(p, short=True)
        words.append(tag if p.param_type_name == "argument" and p.required else f"[{tag}]")
    return " ".join(words)


def tool_page(name: str, application: typer.Typer) -> str:
    command = typer.main.get_command(application)
    about = inspect.cleandoc(application.info.help or "")
    summary = about.split("\n")[0].rstrip(".").split(". ")[0].split(":")[0]
    lines = header(name, lowered(summary))
    subcommands: dict[str, Any] = getattr(command, "commands", {})
    lines += [".SH SYNOPSIS", ".nf"]
    if subcommands:
        lines += [roff(usage(f"{name} {verb}", sub)) for verb, sub in subcommands.items()]
    else:
        lines += [roff(usage(name, command))]
    lines += [".fi"]
    lines += [".SH DESCRIPTION", *paragraphs(about)]
    if subcommands:
        lines += [".SH COMMANDS"]
        for verb, sub in subcommands.items():
            lines += [".TP", f".B {roff(verb)}", roff(" ".join((sub.help or "").split()))]
            options = [item for item in param_items(sub) if item[0] != "-h, --help"]
            if options:
                lines += [".RS", *tagged(options, bold=False), ".RE"]
        lines += [".SH OPTIONS", *tagged([("-h, --help", "print the help and exit")])]
    else:
        lines += [".SH OPTIONS", *tagged(param_items(command))]
    for schema in JSON_SCHEMAS.get(name, ()):
        lines += [f".SH JSON OUTPUT: {roff(schema.command).upper()}"]
        lines += paragraphs(f"{schema.command} prints {schema.shape}, one line:")
        lines += tagged((f.name, f"({f.kind}) {f.meaning}") for f in schema.fields)
        lines += paragraphs(json_output.TEXT_NOTE)
    lines += [".SH SHELL COMPLETION"]
    lines += paragraphs(
        f"""{name} --install-completion installs completion of its commands and options for
        the current shell (bash, zsh, fish or PowerShell); {name} --show-completion prints
        it instead."""
    )
    lines += footer(name, TOOL_STATUS)
    return "\n".join(lines) + "\n"


def outputs(tools: dict[str, typer.Typer]) -> dict[str, str]:
    """Every page's path (from the checkout's top) and text; ``tools``: each typer
    tool's name and application (mosix.generate names them: mosix.testcluster's CLI
    leans on mosix.tools, so this module cannot import it)."""
    pages = {
        "mosrun": grammar_page("mosrun", "run a program under the MOSIX discipline", MOSRUN_TEXT),
        "mosenv": grammar_page(
            "mosenv", "mosrun that keeps LD_* and MALLOC_* variables", MOSRUN_TEXT + MOSENV_TEXT
        ),
        "native": native_page(),
    }
    pages |= {name: tool_page(name, application) for name, application in tools.items()}
    return {f"{MAN_DIR}/{name}.{SECTION}": text for name, text in pages.items()}
