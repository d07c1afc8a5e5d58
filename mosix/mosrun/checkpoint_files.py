"""mosrun -I (list a checkpoint file) and -R (become the process it holds)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from mosix.arguments import MosrunArgs
from mosix.exits import EXIT_USAGE, Failure


def inspect(path: str) -> NoReturn:
    from mosix.ckpt.image import ImageError, read_head_from
    from mosix.ckpt.inspect import listing

    try:
        head = read_head_from(path)
    except ImageError as e:
        raise Failure(f"-I{path}: {e}", EXIT_USAGE) from None
    sys.stdout.write("\n".join(listing(path, head)) + "\n")
    sys.stdout.flush()
    raise SystemExit(0)


def recover(args: MosrunArgs, wait_turn: Callable[[MosrunArgs], None]) -> NoReturn:
    from mosix.mosrun.recover import recover as become_recovered

    become_recovered(args, dict(os.environ), wait_turn)
