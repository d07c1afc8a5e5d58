"""Turn a parsed mosrun command line into the running program.

mosrun becomes the program: it execs in place, so the pid a shell sees
(``$!``), the parent, the terminal and the exit status are the program's own.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from mosix.arguments import MosrunArgs, Unsupported, inherit, inherited_words
from mosix.discipline.launcher import NO_DISCIPLINE, exec_launcher, saved_environment
from mosix.exits import EXIT_USAGE, Failure
from mosix.start_contract import INHERIT_ENV, outer_settings

# what steers even an isolated (-I) Python 3.11 to another installation's modules
STEERING_ENV = ("PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")


def default_signals() -> None:
    """Undo Python's start-up changes that exec would otherwise pass on."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def holds_wrapper_group() -> bool:
    """Started by a set-group-ID wrapper whose group this process still holds."""
    return len(set(os.getresgid())) > 1


def check_wrapper_start() -> None:
    """-g with the wrapper's group kept: the wrapper must have started this Python
    isolated (``python -I``, no PYTHONEXECUTABLE): otherwise the caller's environment
    (PYTHONPATH, a sitecustomize) could steer a process that holds the site's group.
    Too late to stop such code here; this tells the administrator the wrapper is unsafe."""
    steering = [name for name in STEERING_ENV if name in os.environ]
    if holds_wrapper_group() and (not sys.flags.isolated or steering):
        drop_wrapper_group()
        why = f"{steering[0]} is set" if steering else "it is not 'python -I'"
        raise Failure(f"-g: the wrapper started mosrun unsafely: {why}", EXIT_USAGE)


def drop_wrapper_group() -> None:
    """-g: called by the administrator's setgid wrapper (mosrun(1), FOR THE SYSTEM
    ADMINISTRATOR); mosrun keeps the wrapper's group only for its requests to the
    node agent ([site] mosrun_group): after the last one, and before anything else
    is opened or run, it and everything it starts run as the real group."""
    if not holds_wrapper_group():
        return
    gid = os.getgid()
    try:
        os.setresgid(gid, gid, gid)
    except OSError as e:
        raise Failure(f"-g: cannot drop the wrapper's group: {e.strerror}", EXIT_USAGE) from None


def run_program(args: MosrunArgs, keep_environment: bool, private_mb: int = 0) -> NoReturn:
    """Become the program under the settings of ``args`` (and of an outer mosrun);
    ``private_mb``: the node agent's maximum of its -X files at home (0: none).

    The C launcher installs the discipline (seccomp filter, guard, preload
    shim) and executes the program in place; see mosix.discipline.launcher.
    """
    drop_wrapper_group()  # the program never keeps a set-group-ID wrapper's group
    env = dict(os.environ)
    effective = inherit(outer_settings(env), args)
    env[INHERIT_ENV] = " ".join(inherited_words(effective))
    default_signals()
    if keep_environment:
        env.update(saved_environment(env))
    mode = (effective.unsupported or Unsupported.KILL).value
    prog = "mosenv" if keep_environment else "mosrun"
    exec_launcher(
        mode,
        prog,
        effective.program[0],
        effective.argv(),
        env,
        private_dirs=args.private_dirs,
        private_mb=private_mb,
    )


def run_native(argv: Sequence[str], path: str | None = None) -> NoReturn:
    """Run ``argv`` (the program ``path``, else ``argv[0]``) outside the discipline
    (the caller is not under it; see native_client)."""
    env = {k: v for k, v in os.environ.items() if k != INHERIT_ENV}
    default_signals()
    exec_launcher(NO_DISCIPLINE, "native", path or argv[0], argv, env)
