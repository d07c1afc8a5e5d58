"""The one generator: every file of the checkout made from a Python definition.

    python -m mosix.generate            write the files that differ
    python -m mosix.generate --check    only name them (status 1)

What is generated, and from what (each file's first line says so too):
  csrc/generated/seccomp_table.h, docs/SYSCALLS.md   mosix/discipline/policy.py
  csrc/generated/forward_table.h                     mosix/discipline/forwarding.py
  csrc/generated/ckpt_format.h, docs/IMAGE.md        mosix/ckpt/format.py
  csrc/generated/mosix_names.h                       mosix/native_names.py, mosix/protocol.py
  man/man1/*.1 (the commands' man pages)             mosix/tools/manpages.py (from
                      mosix/arguments.py, the typer tools and mosix/tools/json_output.py)
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import fields
from pathlib import Path

import typer

from mosix import native_names, protocol
from mosix.ckpt import generate as ckpt_generate
from mosix.cli import NATIVE_SYNOPSIS
from mosix.codegen import COMMAND, c_banner
from mosix.discipline import generate as discipline_generate
from mosix.tools import help_pages, manpages

NAMES_HEADER = "csrc/generated/mosix_names.h"
EXIT_STALE, EXIT_USAGE = 1, 2


def names_header_text() -> str:
    out = [
        c_banner("mosix/native_names.py"),
        "/* mosix_names.h - the names the C helpers share with the Python agents. */",
        "#ifndef MOSIX_NAMES_H",
        "#define MOSIX_NAMES_H",
    ]
    for prefix, names in native_names.C_NAMES.items():
        if isinstance(names, dict):
            pairs = [(name, f'"{value}"') for name, value in names.items()]
            out += ["", "/* constants */"]
        else:
            pairs = [
                (m.name, str(m.value) if isinstance(m, int) else f'"{m.value}"') for m in names
            ]
            out += ["", f"/* {names.__name__}: {(names.__doc__ or '').strip()} */"]
        out += [f"#define {prefix}_{name} {value}" for name, value in pairs]
    out += ["", "/* The messages the guard speaks with its agent (mosix/protocol.py). */"]
    out += [f'#define {name} "{value}"' for name, value in guard_message_names()]
    out += ["", "#endif"]
    return "\n".join(out) + "\n"


# The agent's messages that the guard (csrc/exec/guard_agent.c) sends or reads.
GUARD_MESSAGES = (
    protocol.Checkpoint,
    protocol.CheckpointSettings,
    protocol.Checkpointed,
    protocol.Done,
    protocol.Refused,
    protocol.GuardHello,
)


def guard_message_names() -> list[tuple[str, str]]:
    """MOSIX_MSG_KEY_OP, each message's op and field names, the checkpoint actions and
    origins: the names guard_agent.c and guard_cbor.c put on and read from the wire."""
    names: list[tuple[str, str]] = [("MOSIX_MSG_KEY_OP", "op")]
    for cls in GUARD_MESSAGES:
        upper = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).upper()
        names.append((f"MOSIX_MSG_{upper}_OP", cls.OP))
        names += [(f"MOSIX_MSG_{upper}_{f.name.upper()}", f.name) for f in fields(cls)]
    names += [(f"MOSIX_MSG_ACTION_{a.upper()}", a) for a in protocol.CHECKPOINT_ACTIONS]
    names += [(f"MOSIX_MSG_ORIGIN_{o.upper()}", o) for o in protocol.CHECKPOINT_ORIGINS]
    return names


def outputs() -> dict[str, str]:
    """Every generated file's path (from the checkout's top) and text."""
    return {
        **discipline_generate.outputs(),
        **ckpt_generate.outputs(),
        NAMES_HEADER: names_header_text(),
        **manpages.outputs(typer_tools()),
        help_pages.MODULE: help_pages.module_text(NATIVE_SYNOPSIS, typer_tools()),
    }


def typer_tools() -> dict[str, typer.Typer]:
    """The commands made with typer, for their man pages."""
    from mosix.slurm import cli as slurm
    from mosix.testcluster import cli as testcluster
    from mosix.tools import migrate, mosctl, mosixd, moskillall, mosmon, mosps, mosq

    return {
        "migrate": migrate.cli,
        "mosps": mosps.cli,
        "mosq": mosq.cli,
        "moskillall": moskillall.cli,
        "mosctl": mosctl.cli,
        "mosmon": mosmon.cli,
        "mosixd": mosixd.cli,
        "mosix-testcluster": testcluster.cli,
        "mosix-slurm": slurm.cli,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="write every generated file")
    parser.add_argument("--check", action="store_true", help="only name the stale files")
    default_root = Path(__file__).resolve().parents[1]
    parser.add_argument("--root", type=Path, default=default_root, help="the checkout")
    ns = parser.parse_args(argv)
    root: Path = ns.root
    if not (root / "csrc").is_dir():
        print(f"{COMMAND}: {root}: not a checkout (no csrc/)", file=sys.stderr)
        return EXIT_USAGE
    stale = []
    for rel, text in outputs().items():
        path = root / rel
        if path.exists() and path.read_text() == text:
            continue
        if ns.check and rel == help_pages.MODULE and path.exists():
            kept = help_pages.rendered_with(path.read_text())
            if kept != help_pages.renderer():
                continue  # rendered by another typer/click: this one would render otherwise
        stale.append(rel)
        if not ns.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if ns.check and stale:
        print(f"{COMMAND}: stale (run {COMMAND}): {', '.join(stale)}", file=sys.stderr)
        return EXIT_STALE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
