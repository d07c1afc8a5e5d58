"""Entry points of ``mosrun``, ``mosenv`` and ``native`` (the scripts pyproject.toml names).

What they do lives in :mod:`mosix.mosrun`: :mod:`mosix.mosrun.command` turns a
mosrun command line into an action, :mod:`mosix.mosrun.launch` execs in place.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from mosix.arguments import HELP_OPTION
from mosix.exits import EXIT_USAGE, Failure
from mosix.mosrun import launch
from mosix.mosrun.command import fail, run_mosrun


def mosrun_main() -> NoReturn:
    run_mosrun("mosrun", sys.argv[1:], keep_environment=False)


def mosenv_main() -> NoReturn:
    run_mosrun("mosenv", sys.argv[1:], keep_environment=True)


NATIVE_SYNOPSIS = (
    "usage: native program [args]...\n\n"
    "Run a program outside the MOSIX discipline (from inside it: through the node agent).\n"
)


def native_main() -> NoReturn:
    argv = sys.argv[1:]
    if argv[:1] == [HELP_OPTION]:
        sys.stdout.write(NATIVE_SYNOPSIS)
        raise SystemExit(0)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        fail("native", "no program given", EXIT_USAGE)
    if argv[0].startswith("-"):
        fail("native", f"{argv[0]}: unknown option (native takes no options)", EXIT_USAGE)
    from mosix.sysinfo.proc_info import under_discipline

    try:
        if under_discipline():
            from mosix.mosrun.native_client import run_via_agent

            run_via_agent(argv)
        launch.run_native(argv)
    except Failure as e:
        fail("native", e.message, e.status)
