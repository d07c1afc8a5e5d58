"""Start-up time of the commands, against the interpreter's own, measured in the same run.

    python3 benchmarks/bench_startup.py [--rounds 15]

Every command is run ``--rounds`` times, the rounds interleaved (so a busy moment
hits all of them alike); each number is the best run.  Baselines: ``python -c pass``
(the interpreter's start-up, site and the editable-install finder included), and the
imports every typer tool pays (``import typer``; typer >= 0.2x also imports pydantic
as soon as it parses a typed parameter, ``--help`` excepted).  The commands are those
of this interpreter's environment (the installed package).  ``migrate --help`` is
also measured as it was before the tools' help became plain (typer's rich boxes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent

# migrate --help as it was printed before the tools' help became plain: through rich
RICH_HELP = (
    "from mosix.tools import migrate; from mosix.tools.common import run; "
    "migrate.cli.rich_markup_mode = 'rich'; run(migrate.cli, 'migrate', ['--help'])"
)

CASES: list[tuple[str, list[str]]] = [
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("python -c 'import typer'", [sys.executable, "-c", "import typer"]),
    ("python -c 'import pydantic'", [sys.executable, "-c", "import pydantic"]),
    ("python -c 'import mosix.protocol'", [sys.executable, "-c", "import mosix.protocol"]),
    ("python -c 'import mosix.arguments'", [sys.executable, "-c", "import mosix.arguments"]),
    ("mosrun true", [str(BIN / "mosrun"), "true"]),
    ("mosrun --help", [str(BIN / "mosrun"), "--help"]),
    ("mosrun -Y true (usage error)", [str(BIN / "mosrun"), "-Y", "true"]),
    ("migrate --help", [str(BIN / "migrate"), "--help"]),
    ("migrate --help, rich's boxes (before)", [sys.executable, "-c", RICH_HELP]),
    ("mosps --help", [str(BIN / "mosps"), "--help"]),
    ("mosq abort -5 (usage error)", [str(BIN / "mosq"), "abort", "-5"]),
    ("mosctl whois 1 (no agent to ask)", [str(BIN / "mosctl"), "whois", "1"]),
]


def once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    # an agent nobody runs: the tools fail fast instead of starting one
    env = dict(os.environ, MOSIX_RUN_DIR="/nonexistent/mosix-bench-startup")
    best = {name: float("inf") for name, _ in CASES}
    for _ in range(rounds):
        for name, argv in CASES:
            best[name] = min(best[name], once(argv, env))
    base = best["python -c pass"]
    typer_base = best["python -c 'import typer'"]
    print(f"{'command':<40} {'best ms':>8} {'/ python':>9} {'/ typer':>8}")
    for name, _ in CASES:
        t = best[name]
        print(f"{name:<40} {t * 1000:>8.1f} {t / base:>8.1f}x {t / typer_base:>7.2f}x")


if __name__ == "__main__":
    main()
