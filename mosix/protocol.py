"""The one definition of every message between mosix processes and agents.

Wire format: a frame is a 4-byte big-endian length followed by that many bytes
of CBOR encoding one map.  A request map has ``"op"`` naming its message type
(the ``OP`` of a class below) and that type's fields; a reply has ``"op"`` too.
Frames larger than :data:`MAX_FRAME` are refused.  Decoding checks every
field's type, so a client sending garbage gets a :class:`ProtocolError` (and
a one-line error reply), never a crash of the agent.

The same schema serves the local control socket (mosrun, the tools, the shim)
and, later, the TCP links between agents.
"""

from __future__ import annotations

import io
import struct
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import cbor2

MAX_FRAME = 1 << 20  # 1 MiB: bigger frames are refused
HEADER = struct.Struct(">I")

T = TypeVar("T", bound="Message")


class ProtocolError(Exception):
    """A frame or message that does not follow this schema."""


@dataclass(frozen=True)
class Message:
    OP: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        return {"op": self.OP, **asdict(self)}


MESSAGES: dict[str, type[Message]] = {}


def message(cls: type[T]) -> type[T]:
    """Register a message class under its OP."""
    if cls.OP in MESSAGES:
        raise RuntimeError(f"two messages named {cls.OP}")
    MESSAGES[cls.OP] = cls
    return cls


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class ProcessInfo:
    """One MOSIX process as the registry knows it."""

    pid: int
    uid: int
    job: int
    state: str  # running | queued | frozen | checkpointing
    where: str  # "home" or the node it runs on
    home: str  # home node name
    started: float  # wall-clock time it started (s since the epoch)
    estimate_minutes: int | None  # -D, with frozen time added
    memory_mb: int | None
    flags: list[str]  # the inherited option words (-G3 -L -e ...)
    command: list[str]
    why_here: str = ""  # why it cannot move, if it cannot


@dataclass(frozen=True)
class QueueEntry:
    """One queued job (a mosrun waiting for its turn)."""

    ticket: int  # the queue's order of arrival: lower came first
    pid: int
    uid: int
    job: int
    priority: int
    mode: str  # "q" (killed on abort) or "Q" (runs on abort)
    memory_mb: int
    parallel: int
    command: list[str]
    position: int = 0  # place in the queue, 1 = next to run


@dataclass(frozen=True)
class NodeFacts:
    node: int
    name: str
    cpus: int
    speed_mhz: float
    load: list[float]  # 1, 5 and 15 minute load averages
    mem_total_mb: int
    mem_free_mb: int  # available memory (MemAvailable)
    queue_slots: int
    queue_running: int
    queued: int
    processes: int


# ------------------------------------------------------------------ replies


@message
@dataclass(frozen=True)
class Done(Message):
    OP: ClassVar[str] = "done"
    count: int = 0


@message
@dataclass(frozen=True)
class Refused(Message):
    """A request that was refused or failed; ``error`` is one line for the user."""

    OP: ClassVar[str] = "refused"
    error: str = ""


@message
@dataclass(frozen=True)
class Processes(Message):
    OP: ClassVar[str] = "processes"
    processes: list[ProcessInfo] = field(default_factory=list)


@message
@dataclass(frozen=True)
class QueueListing(Message):
    OP: ClassVar[str] = "queue-listing"
    entries: list[QueueEntry] = field(default_factory=list)
    total: int = 0


@message
@dataclass(frozen=True)
class Status(Message):
    OP: ClassVar[str] = "status"
    facts: NodeFacts | None = None


@message
@dataclass(frozen=True)
class Queued(Message):
    """Enqueue accepted; the connection stays open until Go or Abort."""

    OP: ClassVar[str] = "queued"
    ticket: int = 0


@message
@dataclass(frozen=True)
class Go(Message):
    """A queued job may start now."""

    OP: ClassVar[str] = "go"
    reason: str = ""  # "turn", "mosq run", or why a -Q job bypassed the queue
    ticket: int = 0


@message
@dataclass(frozen=True)
class Abort(Message):
    """A queued -q job must not run: the queue aborted it or the agent stopped."""

    OP: ClassVar[str] = "abort"
    reason: str = ""
    ticket: int = 0


@message
@dataclass(frozen=True)
class Started(Message):
    """native: the program was started with this pid."""

    OP: ClassVar[str] = "started"
    pid: int = 0


@message
@dataclass(frozen=True)
class Exited(Message):
    """native: the program ended: its exit code, or -signal when a signal killed it."""

    OP: ClassVar[str] = "exited"
    code: int = 0


# ----------------------------------------------------------------- requests


@message
@dataclass(frozen=True)
class Register(Message):
    """A mosrun about to become its program registers it."""

    OP: ClassVar[str] = "register"
    pid: int = 0
    job: int = 0
    estimate_minutes: int | None = None
    memory_mb: int | None = None
    flags: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


@message
@dataclass(frozen=True)
class Enqueue(Message):
    """A queued mosrun asks for its turn; keeps the connection open meanwhile.

    ``ticket`` is 0 the first time; a mosrun that lost its agent presents the
    ticket it had, and keeps its place in the queue.
    """

    OP: ClassVar[str] = "enqueue"
    pid: int = 0
    job: int = 0
    priority: int | None = None
    mode: str = "q"
    memory_mb: int = 0
    parallel: int = 1
    command: list[str] = field(default_factory=list)
    ticket: int = 0


@message
@dataclass(frozen=True)
class ListProcesses(Message):
    OP: ClassVar[str] = "list-processes"
    all_users: bool = False
    uid: int | None = None
    job: int | None = None


@message
@dataclass(frozen=True)
class ListQueue(Message):
    OP: ClassVar[str] = "list-queue"
    all_users: bool = False
    count_only: bool = False


@message
@dataclass(frozen=True)
class QueueAction(Message):
    """mosq run | abort | cngpri | advance | retard, on a pid or (job=True) a job ID."""

    OP: ClassVar[str] = "queue-action"
    action: str = ""
    ident: int = 0
    by_job: bool = False
    priority: int | None = None


@message
@dataclass(frozen=True)
class GetStatus(Message):
    OP: ClassVar[str] = "get-status"


@message
@dataclass(frozen=True)
class StartNative(Message):
    """native: start ``argv`` outside the discipline with the caller's fds 0-2.

    The three descriptors travel with this frame as SCM_RIGHTS.
    """

    OP: ClassVar[str] = "start-native"
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"


@message
@dataclass(frozen=True)
class Shutdown(Message):
    OP: ClassVar[str] = "shutdown"


QUEUE_ACTIONS = ("run", "abort", "cngpri", "advance", "retard")


# ------------------------------------------------------------------ codec


def _check(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against type ``hint``; nested records are rebuilt."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _check(value, option, where)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where}: unexpected {type(value).__name__}")
    if hint is type(None):
        if value is not None:
            raise ProtocolError(f"{where}: expected nothing")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list")
        (item,) = typing.get_args(hint)
        return [_check(v, item, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: expected a map")
        key_t, val_t = typing.get_args(hint)
        return {_check(k, key_t, where): _check(v, val_t, where) for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{where}: expected a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            raise ProtocolError(f"{where}: expected an integer")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise ProtocolError(f"{where}: expected {hint.__name__}")
        return value
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: expected a map")
        return _build(hint, value, where)
    raise ProtocolError(f"{where}: cannot check {hint!r}")


def _build(cls: type, data: dict[Any, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            kwargs[f.name] = _check(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ProtocolError(f"{where}: field '{f.name}' missing")
    unknown = set(data) - {f.name for f in fields(cls)} - {"op"}
    if unknown:
        raise ProtocolError(f"{where}: unknown field '{sorted(map(str, unknown))[0]}'")
    return cls(**kwargs)


def decode_message(payload: bytes) -> Message:
    stream = io.BytesIO(payload)
    try:
        data = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several types for bad input
        raise ProtocolError(f"not CBOR: {e}") from None
    if stream.tell() != len(payload):
        raise ProtocolError("trailing bytes after the message")
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a map")
    op = data.get("op")
    cls = MESSAGES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message {op!r}")
    built: Message = _build(cls, data, op)
    return built


def encode_message(msg: Message) -> bytes:
    payload = cbor2.dumps(msg.to_wire())
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message of {len(payload)} bytes is larger than {MAX_FRAME}")
    return HEADER.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes is larger than {MAX_FRAME}")
    return int(length)
