"""A queued mosrun after become_mosqueue (mosix.mosrun.queue_wait): ``python -m`` runs this.

It waits for its turn, then goes on as the mosrun it was.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from mosix.mosrun.command import run_mosrun
from mosix.mosrun.queue_wait import name_process, restore_environment


def main() -> NoReturn:
    restore_environment()
    mode, _, *argv = sys.argv[1:]
    name_process(b"mosqueue")
    run_mosrun(
        "mosenv" if mode == "--mosenv" else "mosrun",
        argv,
        keep_environment=mode == "--mosenv",
        queued=True,
    )


if __name__ == "__main__":
    main()
