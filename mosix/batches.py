"""mosrun -S{maxjobs} commands-file[,failed-file]: run many command lines."""

from __future__ import annotations

from typing import NoReturn

from mosix.arguments import MosrunArgs
from mosix.exits import Failure


def run_commands(args: MosrunArgs, keep_environment: bool) -> NoReturn:
    del args, keep_environment
    raise Failure("-S (run a commands file) is not available yet")
