"""Names the C helpers and the Python agents share, defined once.

``python -m mosix.generate`` writes ``csrc/generated/mosix_names.h`` from
:data:`C_NAMES` (a test fails when it is stale): the C code uses its macros,
the Python code these constants and enums, and neither spells a name itself.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Program(StrEnum):
    """The compiled parts in mosix/_native (each csrc/*/BUILD's "output")."""

    LAUNCHER = "mosix-exec"  # the launcher and the guard
    SHIM = "libmosix_shim.so"
    CAPTURER = "mosix-ckpt"
    RESTORER = "mosix-restore"
    DEPUTY = "mosix-deputy"
    REMOTE = "mosix-remote"  # the supervisor of a guest; the parent of every guest
    ZPIPE = "mosix-zpipe"  # a migration image's compression (zstd) on slow links


# Environment variables.
AGENT_SOCKET_ENV = "MOSIX_AGENT_SOCKET"  # the node agent's socket, for the guard (mosix-exec)
START_GATE_ENV = "MOSIX_START_GATE"  # the FIFO where a program sent elsewhere waits (the shim)
GUARD_ENV = "MOSIX_GUARD"  # "PID:TICKS" of the guard the agent watches (home_agent/guard_watch.py)
# In mosix-ckpt's environment (its agent's): checkpoint files hold every page, referring to
# no file (images meant for another node: a Slurm job's, mosix/slurm/agents.py; the
# benchmark's baseline)
STORE_FILE_PAGES_ENV = "MOSIX_CKPT_STORE_FILE_PAGES"
# The source name of each private temporary directory's tmpfs (mosrun -X): how the
# launcher, the capturer, the deputy and the agent tell them in a mountinfo.
PRIVATE_MOUNT_SOURCE = "mosix-private"

# Agent messages the guard sends: their ``op``.

# The number of MOSIX's checkpoint call (mosix/ckpt/trigger.py, mosix_checkpoint.h): the
# base filter hands it to the guard, which has the node agent take the checkpoint.  The
# discipline's table (mosix.discipline.policy) writes it into the C headers.
CHECKPOINT_NR = 0x3F4D5359


class DeputyOp(StrEnum):
    """The agent messages the deputy (mosix-deputy) sends or reads: their ``op``."""

    HELLO = "deputy"  # out: the deputy starts, with its migration's token
    LOST = "deputy-lost"  # out: its channel broke
    STOP = "deputy-stop"  # out: its copy stopped by SIGSTOP: stop it so (it may not itself)
    CHANNEL = "deputy-channel"  # in, with its channel's descriptors
    HOME = "deputy-home"  # in, with the image to restore in place
    END = "deputy-end"  # in: end, with a message for the program's stderr


class CkptLine(StrEnum):
    """The lines of ``mosix-ckpt -a migrate`` on its stdout and stdin."""

    CAPTURED = "captured"  # out: the image is complete
    GO = "go"  # in: hand the process over to its deputy (or end the copy)
    RESUME = "resume"  # in: let it continue here (every line but GO does)


class CkptExit(IntEnum):
    """The exit statuses of mosix-ckpt (one line on its stderr for each but OK)."""

    OK = 0  # written (or, with -a migrate, handed over)
    FAILED = 1  # any other failure: nothing written, the process left as it was
    USAGE = 2  # bad arguments
    REFUSED = 3  # the process cannot be checkpointed (the image is the reason's line)
    ABANDONED = 4  # -a migrate: told to resume, the process continues here
    DENIED = 5  # we may not checkpoint it (set-id, another user's): nothing created
    NOT_YET = 6  # not yet (a migration of more than one thread): nothing created


class RemoteLine(StrEnum):
    """The lines of mosix-remote: out on its stdout, in on its stdin."""

    READY = "ready"  # out, "ready PID": the copy is restored and runs
    FAILED = "failed"  # out, "failed REASON": it could not be restored
    HOME = "home"  # out: the copy made a call that needs its home
    QUIET = "quiet"  # out, after LEAVE: no call in flight
    EXIT = "exit"  # out, "exit STATUS": the copy ended
    LEFT = "left"  # out: the copy was taken away
    LOST = "lost"  # out: the channel broke, the copy is killed
    CHECKPOINT = "checkpoint"  # out, "checkpoint OP ARG": the copy's own checkpoint call
    LEAVE = "leave"  # in: finish the call in flight, take no more
    STAY = "stay"  # in: it stays after all
    KILL = "kill"  # in: end the copy
    ANSWER = "answer"  # in, "answer RESULT": home's answer to CHECKPOINT (0 or -errno)


def order_line(verb: StrEnum) -> bytes:
    """``verb`` as one line for a helper's stdin."""
    return f"{verb}\n".encode()


# The C header: macro prefix → the names (csrc/generated/mosix_names.h).
C_NAMES: dict[str, type[StrEnum] | type[IntEnum] | dict[str, str]] = {
    "MOSIX": {
        "AGENT_SOCKET_ENV": AGENT_SOCKET_ENV,
        "START_GATE_ENV": START_GATE_ENV,
        "GUARD_ENV": GUARD_ENV,
        "STORE_FILE_PAGES_ENV": STORE_FILE_PAGES_ENV,
        "PRIVATE_MOUNT_SOURCE": PRIVATE_MOUNT_SOURCE,
    },
    "MOSIX_DEPUTY_OP": DeputyOp,
    "MOSIX_CKPT_LINE": CkptLine,
    "MOSIX_CKPT_EXIT": CkptExit,
    "MOSIX_REMOTE_LINE": RemoteLine,
}
