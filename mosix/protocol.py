"""The one definition of every message between mosix processes and agents.

Wire format: a frame is a 4-byte big-endian length followed by that many bytes
of CBOR encoding one map.  A request map has ``"op"`` naming its message type
(the ``OP`` of a class below) and that type's fields; a reply has ``"op"`` too.
Frames larger than :data:`MAX_FRAME` are refused.  Decoding checks every
field's type, so a client sending garbage gets a :class:`ProtocolError` (and
a one-line error reply), never a crash of the agent.

Text fields are CBOR text strings; what is not text but a user's bytes (a
command line's words, file names, the environment of ``native``) travels as
CBOR byte strings (``bytes`` fields), so any argv or file name goes through
unchanged and a text field still has to be valid UTF-8.

The same schema serves the local control socket (mosrun, the tools, the shim)
and, later, the TCP links between agents.
"""

from __future__ import annotations

import io
import operator
import struct
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import cbor2

from mosix.native_names import DeputyOp

MAX_FRAME = 1 << 20  # 1 MiB: bigger frames are refused
LISTING_CHUNK = 2000  # records per frame of a long listing
HEADER = struct.Struct(">I")

T = TypeVar("T", bound="Message")


class ProtocolError(Exception):
    """A frame or message that does not follow this schema."""


class _Lazy(type):
    """The messages' metaclass: each message class becomes its frozen dataclass when it
    is first used (built, or its fields asked for), not at import.  Building all of
    them (some 50) was most of the time a command took to import this module; a
    command uses two or three."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls in _UNBUILT:
            _build(cls)
        return super().__call__(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        if cls in _UNBUILT and name in _BUILT_ATTRIBUTES:
            _build(cls)
            return getattr(cls, name)
        raise AttributeError(f"type object '{cls.__name__}' has no attribute '{name}'")


_UNBUILT: set[type] = set()
_BUILT_ATTRIBUTES = frozenset(["__dataclass_fields__", "__dataclass_params__", "__match_args__"])
_BUILDING = threading.Lock()


def _build(cls: type) -> None:
    with _BUILDING:
        if cls in _UNBUILT:
            dataclass(frozen=True)(cls)
            _UNBUILT.discard(cls)


class Message(metaclass=_Lazy):
    """A message: a frozen dataclass (once used) registered under its OP by @message."""

    OP: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = _plain_data(self)
        wire["op"] = self.OP
        return wire


MESSAGES: dict[str, type[Message]] = {}


@typing.dataclass_transform(frozen_default=True)
def message(cls: type[T]) -> type[T]:
    """Register a message class under its OP; it becomes a frozen dataclass on first use."""
    if cls.OP in MESSAGES:
        raise RuntimeError(f"two messages named {cls.OP}")
    if "__dataclass_fields__" in vars(cls):  # it would be made a dataclass twice on first use
        raise RuntimeError(f"{cls.__name__}: @message makes the dataclass; drop @dataclass")
    MESSAGES[cls.OP] = cls
    _UNBUILT.add(cls)
    return cls


# ------------------------------------------------------------------ records


@dataclass(slots=True)
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
    command: list[bytes]  # argv as the process has it (any bytes)
    why_here: str = ""  # why it cannot move, if it cannot


@dataclass(slots=True)
class QueueEntry:
    """One queued job (a mosrun waiting for its turn), or a frozen process."""

    ticket: int  # the queue's order of arrival: lower came first
    pid: int
    uid: int
    job: int
    priority: int
    mode: str  # "q" (killed on abort) or "Q" (runs on abort)
    memory_mb: int
    parallel: int
    command: list[bytes]  # argv as given (any bytes)
    position: int = 0  # place in the queue, 1 = next to run (0: not in it, frozen)
    state: str = "queued"  # or "frozen": a frozen process (mosq lists it too)
    node: int = 0  # the node whose mosrun waits (0: a one-node queue)


@dataclass(slots=True)
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
    balance_rounds: int = -1  # automatic balancing rounds so far (-1: no balancing here)
    balance_moves: int = 0  # moves it began
    speed: float = 1.0  # relative speed ([node] speed, mosctl setspeed)
    settings: list[str] = field(default_factory=list)  # in force: stay lstay block isolated
    guests: int = 0  # processes of other nodes running here
    away: int = 0  # processes of this home running on other nodes


# ------------------------------------------------------------------ replies


@message
class Done(Message):
    OP: ClassVar[str] = "done"
    count: int = 0


@message
class Refused(Message):
    """A request that was refused or failed; ``error`` is one line for the user."""

    OP: ClassVar[str] = "refused"
    error: str = ""


@message
class Processes(Message):
    OP: ClassVar[str] = "processes"
    processes: list[ProcessInfo] = field(default_factory=list)
    more: bool = False  # long listings come in several frames


@message
class QueueListing(Message):
    OP: ClassVar[str] = "queue-listing"
    entries: list[QueueEntry] = field(default_factory=list)
    total: int = 0
    more: bool = False  # long listings come in several frames


@message
class Status(Message):
    OP: ClassVar[str] = "status"
    facts: NodeFacts | None = None


@message
class Queued(Message):
    """Enqueue accepted; the connection stays open until Go or Abort."""

    OP: ClassVar[str] = "queued"
    ticket: int = 0


@message
class Go(Message):
    """A queued job may start now."""

    OP: ClassVar[str] = "go"
    reason: str = ""  # "turn", "mosq run", or why a -Q job bypassed the queue
    ticket: int = 0
    node: int = 0  # the partition's queue: the node to start on (0: where mosrun is)


@message
class Abort(Message):
    """A queued -q job must not run: the queue aborted it or the agent stopped."""

    OP: ClassVar[str] = "abort"
    reason: str = ""
    ticket: int = 0


@message
class Started(Message):
    """native: the program was started with this pid."""

    OP: ClassVar[str] = "started"
    pid: int = 0


@message
class Exited(Message):
    """native: the program ended: its exit code, or -signal when a signal killed it."""

    OP: ClassVar[str] = "exited"
    code: int = 0


@message
class Checkpointed(Message):
    """A checkpoint was taken: written to ``path`` (absolute), its ``number``.

    ``failed`` is the one-line reason when the process could not be
    checkpointed (open pipes or sockets, threads, set-id): the file then holds
    just that message and still counts, as the manual says.
    """

    OP: ClassVar[str] = "checkpointed"
    path: bytes = b""
    number: int = 0
    failed: str = ""


# ----------------------------------------------------------------- requests


@message
class Register(Message):
    """A mosrun about to become its program registers it."""

    OP: ClassVar[str] = "register"
    pid: int = 0
    job: int = 0
    estimate_minutes: int | None = None
    memory_mb: int | None = None
    flags: list[str] = field(default_factory=list)
    command: list[bytes] = field(default_factory=list)  # argv (any bytes)
    checkpoint_file: bytes = b""  # -C as given (b"" = the default ckpt.{pid})
    checkpoint_next: int = 0  # the next checkpoint's number (0: from the -C name)
    checkpoint_limit: int = 0  # -N (0: unlimited)
    checkpoint_interval: int = 0  # -A minutes (0: none)
    placement: str = ""  # the placement option word ("-r node2", "-b", "-j1-3"; "" none)
    force_elsewhere: bool = False  # -F
    gate: str = ""  # a FIFO the program waits at until the agent has placed it
    recovering: bool = False  # -R: placed once the restorer has resumed it (no gate)


@message
class Registered(Message):
    """The answer to Register: ``count`` 1 when the program is to be placed elsewhere
    (it waits at its gate); from an agent with a site group, the admission its
    descendants carry (mosix.home_agent.admission_key; "" otherwise); and the
    maximum size of its -X files at home."""

    OP: ClassVar[str] = "registered"
    count: int = 0
    admission: str = ""
    # the most MiB the program's -X files take together at home
    # ([private] home_mb; 0: no maximum of the administrator's)
    private_mb: int = 0


@message
class Checkpoint(Message):
    """Take a checkpoint of ``pid`` now: ``migrate PID checkpoint|chkstop|chkexit``
    (origin "manual"), or the program's own request through the guard (origin
    "program").  Replied to with Checkpointed or Refused once the file is complete."""

    OP: ClassVar[str] = "checkpoint"
    pid: int = 0
    action: str = "checkpoint"
    origin: str = "manual"


@message
class CheckpointSettings(Message):
    """A program changes its own -C, -N or -A (MOSIX's /proc/self/checkpointfile,
    checkpointlimit, checkpointinterval).  None leaves a setting as it is."""

    OP: ClassVar[str] = "checkpoint-settings"
    pid: int = 0
    file: bytes | None = None
    limit: int | None = None
    interval: int | None = None


@message
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
    command: list[bytes] = field(default_factory=list)  # argv (any bytes)
    ticket: int = 0
    movable: bool = False  # it may start on another node (Go.node); -S lines may not


@message
class Release(Message):
    """A queue ticket of this connection is done with: withdrawn before it ran, or
    its line of -S ended.  No reply (a -S runner sends many while Go frames arrive)."""

    OP: ClassVar[str] = "release"
    ticket: int = 0


@message
class ListProcesses(Message):
    OP: ClassVar[str] = "list-processes"
    all_users: bool = False
    uid: int | None = None
    job: int | None = None


@message
class ListQueue(Message):
    OP: ClassVar[str] = "list-queue"
    all_users: bool = False
    count_only: bool = False


@message
class QueueAction(Message):
    """mosq run | abort | cngpri | advance | retard, on a pid or (job=True) a job ID."""

    OP: ClassVar[str] = "queue-action"
    action: str = ""
    ident: int = 0
    by_job: bool = False
    priority: int | None = None


@message
class GetStatus(Message):
    OP: ClassVar[str] = "get-status"


# mosctl's orders to its node (root): MOSIX's administration verbs.
NODE_VERBS = (
    "stay",  # no automatic migration away from this node
    "nostay",
    "lstay",  # local processes (of this home) stay here
    "nolstay",
    "block",  # accept no guests
    "noblock",
    "expel",  # send the guests home
    "bring",  # bring this home's processes home
    "isolate",  # leave the cluster
    "rejoin",
    "setspeed",  # this node's relative speed (``speed``)
)


@message
class NodeControl(Message):
    """Control socket (root): one of NODE_VERBS; answered by Done (count: processes sent
    away or brought home) or Refused."""

    OP: ClassVar[str] = "node-control"
    verb: str = ""
    speed: float = 0.0


@message
class StartNative(Message):
    """native: start ``argv`` outside the discipline with the caller's fds 0-2.

    Four descriptors travel with this frame as SCM_RIGHTS: the caller's 0, 1, 2
    and its current directory (O_PATH).
    """

    OP: ClassVar[str] = "start-native"
    argv: list[bytes] = field(default_factory=list)
    env: dict[bytes, bytes] = field(default_factory=dict)


@message
class StartBatch(Message):
    """mosrun -E/-M: run ``argv`` as a batch job on the node ``placement`` names.

    ``kind`` is "E" (native there) or "M" (under mosrun there, its home there:
    ``argv`` then starts with the mosrun options the job keeps); ``cwd`` its
    directory there (absolute).  The agent answers Started (the node's number
    in ``pid``), BatchHere (no cluster: it runs here) or Refused; then BatchData
    both ways and BatchSignal from the client, and Exited at the end.
    """

    OP: ClassVar[str] = "start-batch"
    kind: str = "E"
    placement: str = ""  # a placement option word, as Register's
    force_elsewhere: bool = False
    argv: list[bytes] = field(default_factory=list)
    env: dict[bytes, bytes] = field(default_factory=dict)
    cwd: bytes = b""
    job: int = 0  # -J (mosps -J, moskillall -J)


@message
class BatchHere(Message):
    """The answer to StartBatch on a node without a cluster (the embedded one-node
    default): this node is the only one, so the job runs here, and mosrun runs it
    itself (-E outside the discipline, -M as an ordinary mosrun)."""

    OP: ClassVar[str] = "batch-here"


@message
class BatchOffer(Message):
    """Home agent to the chosen node's agent: start a batch job for user ``uid``.

    Answered with Started (the pid there) or Refused, then BatchData both ways,
    BatchSignal from home, and Exited.  Ids, groups and umask are read by the
    home agent from the kernel, never taken from the client."""

    OP: ClassVar[str] = "batch-offer"
    home: int = 0
    kind: str = "E"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    umask: int = 0o022
    argv: list[bytes] = field(default_factory=list)
    env: dict[bytes, bytes] = field(default_factory=dict)
    cwd: bytes = b""


@message
class BatchData(Message):
    """Bytes of a batch job's standard stream ``fd`` (0, 1 or 2); empty: its end."""

    OP: ClassVar[str] = "batch-data"
    fd: int = 0
    data: bytes = b""


@message
class BatchSignal(Message):
    """A signal for a batch job (relayed by its mosrun)."""

    OP: ClassVar[str] = "batch-signal"
    signal: int = 0


# The partition's queue (mosix/queue/keeper.py, relay.py): every node's agent
# relays its queued mosruns and its mosq requests to the partition's keeper.


@message
class QueueEnter(Message):
    """A node's agent to its partition's keeper: one queued job, on a connection kept
    open while it waits and while it runs (its end frees the job's slots).

    The keeper answers Queued (its ticket), QueuePlace when mosq moves it, Go (with
    the node to start on) or Abort.  ``ticket`` and ``order`` are 0 for a new job;
    a node re-announces its jobs with them when the keeper changed or restarted,
    ``running_on`` naming the node of a job that already started (0: queued)."""

    OP: ClassVar[str] = "queue-enter"
    node: int = 0  # the node whose mosrun waits
    uid: int = 0  # read by that node's agent from the kernel
    pid: int = 0
    job: int = 0
    priority: int = 50  # already the node's default when the user gave none
    mode: str = "q"
    memory_mb: int = 0
    parallel: int = 1
    command: list[bytes] = field(default_factory=list)
    movable: bool = False
    ticket: int = 0
    order: float = 0.0
    running_on: int = 0


@message
class QueuePlace(Message):
    """The keeper to a job's node: its place changed (mosq cngpri/advance/retard), kept
    there so that a new keeper gets it back."""

    OP: ClassVar[str] = "queue-place"
    ticket: int = 0
    priority: int = 0
    order: float = 0.0


@message
class QueueAsk(Message):
    """A node's agent to its partition's keeper: mosq's ListQueue or QueueAction for a
    user of that node (``uid``, read from the kernel there).  Answered as on the
    control socket: QueueListing frames, Done or Refused."""

    OP: ClassVar[str] = "queue-ask"
    uid: int = 0
    listing: bool = True  # ListQueue (all_users, count_only) or QueueAction (the rest)
    all_users: bool = False
    count_only: bool = False
    action: str = ""
    ident: int = 0
    by_job: bool = False
    priority: int | None = None


@message
class Shutdown(Message):
    OP: ClassVar[str] = "shutdown"


@message
class GuardHello(Message):
    """A guard (csrc/mosix_guard.c) announces itself before its program starts, with
    the filter's listener attached (SCM_RIGHTS): ``root`` is the program's pid,
    ``mode`` the launching mosrun's -u/-e/-w letter.  Done: the agent watches it and
    kills the tree's -u processes if it dies while they live (home_agent/guard_watch.py)."""

    OP: ClassVar[str] = "guard-hello"
    root: int = 0
    mode: str = "u"


# ------------------------------------------------------------ the cluster
#
# Between agents, over TCP (mosix/remote_agent/).  Every connection starts with
# PeerHello -> PeerChallenge -> PeerProof -> PeerWelcome (or Refused at any
# step): HMAC-SHA256 with the cluster secret over both nonces and both node
# numbers (mosix/cluster/auth.py).  Every later frame carries a MAC
# (mosix/cluster/frame_mac.py).  The connection's next message picks
# its handler (Cluster.on); LoadVector starts a stream of load reports.


@message
class PeerHello(Message):
    """The connecting agent: who it is, whom it wants, its nonce (hex)."""

    OP: ClassVar[str] = "peer-hello"
    version: int = 1
    node: int = 0
    to_node: int = 0
    nonce: str = ""


@message
class PeerChallenge(Message):
    """The accepting agent's nonce (hex); it proves itself only after the caller did."""

    OP: ClassVar[str] = "peer-challenge"
    node: int = 0
    nonce: str = ""


@message
class PeerProof(Message):
    """The connecting agent's MAC (hex) over both nonces and both node numbers."""

    OP: ClassVar[str] = "peer-proof"
    proof: str = ""


@message
class PeerWelcome(Message):
    """The accepting agent's MAC (hex): both sides are now authenticated."""

    OP: ClassVar[str] = "peer-welcome"
    proof: str = ""


@message
class LoadVector(Message):
    """One node's load report, sent to every other node every load_interval."""

    OP: ClassVar[str] = "load-vector"
    node: int = 0
    cpus: int = 0
    speed: float = 1.0  # relative CPU speed ([node] speed)
    load: float = 0.0  # runnable processes, this agent excluded
    free_mb: int = 0  # available memory
    total_mb: int = 0
    procs: int = 0  # MOSIX processes running here
    stamp: float = 0.0  # the sender's wall clock when measured (s since the epoch)
    extra: dict[str, int | float | str] = field(default_factory=dict)


@dataclass(slots=True)
class NodeLoad:
    """One node of the map as this agent sees it (mosctl rstatus)."""

    number: int
    address: str
    name: str
    partition: int
    alive: bool
    cpus: int
    speed: float
    load: float
    free_mb: int
    total_mb: int
    procs: int
    age: float | None  # seconds since its last load report (None: never heard)
    settings: list[str] = field(default_factory=list)  # mosctl's it reports: stay, block
    guests: int = 0  # processes of other nodes running there (its load vector's extra)


@message
class ListNodes(Message):
    """Control socket: the nodes of the cluster and their loads."""

    OP: ClassVar[str] = "list-nodes"


@message
class Nodes(Message):
    OP: ClassVar[str] = "nodes"
    nodes: list[NodeLoad] = field(default_factory=list)


# ------------------------------------------------------------ migration
# Between agents (TCP, after the peer handshake), each on its own connection
# whose first message names the migration by its token.


@message
class MigrateOffer(Message):
    """Home to target: take process ``pid`` (its home is node ``home``)?

    Answered with MigrateAccept or Refused; later, on the same connection,
    MigrateResult once the image is restored (or not).
    """

    OP: ClassVar[str] = "migrate-offer"
    token: str = ""
    home: int = 0
    pid: int = 0
    uid: int = 0
    gid: int = 0
    mode: str = "u"  # the unsupported-call mode: u, e or w
    time_here: bool = False  # -t: time calls run where the process runs
    memory_mb: int = 0  # resident size now
    required_mb: int = 0  # -m
    command: list[bytes] = field(default_factory=list)  # argv (any bytes)
    direct: bool = False  # direct channels follow ([cluster] fast_path)
    direct_channels: int = 1  # how many (one per thread that may call at once)
    grid_class: int = 0  # -G{class} (0: its home's partition only)
    private_dirs: list[str] = field(default_factory=list)  # -X: made there, filled from the image
    private_home_mb: int = 0  # -X: their files' size there (home's maximum; 0: none)
    private_away_mb: int = 0  # -X: beyond this there, it comes home (0: no watch)
    compressed: bool = False  # home would send the image compressed ([cluster] compress)


@message
class MigrateAccept(Message):
    OP: ClassVar[str] = "migrate-accept"
    token: str = ""
    compressed: bool = False  # the offer asked it and this node can decompress: it comes so


@message
class MigrateImage(Message):
    """First message of the connection that then carries the image's bytes."""

    OP: ClassVar[str] = "migrate-image"
    token: str = ""


@message
class MigrateChannel(Message):
    """First message of the connection that becomes the forwarding channel, or
    (``direct``) direct channel number ``index`` between the copy's shim and the deputy."""

    OP: ClassVar[str] = "migrate-channel"
    token: str = ""
    direct: bool = False
    index: int = 0


@message
class MigrateResult(Message):
    """The target restored the process (``remote_pid`` there), or ``error``."""

    OP: ClassVar[str] = "migrate-result"
    token: str = ""
    remote_pid: int = 0
    error: str = ""


@message
class BringHome(Message):
    """Home to where the copy runs: capture it and send its image back on this
    connection (a RemoteEvent 'sending' precedes the bytes), then wait for
    MigrateFinish.  Also the answer to a copy that asked to come home."""

    OP: ClassVar[str] = "bring-home"
    token: str = ""
    compressed: bool = False  # home would take the image compressed ([cluster] compress)


@message
class MigrateFinish(Message):
    """Home to the old place of a copy: the image was restored (``ok``): end the
    copy there; else let it run on."""

    OP: ClassVar[str] = "migrate-finish"
    token: str = ""
    ok: bool = False


@message
class MigrateCheckpoint(Message):
    """Home to where the copy runs: capture the copy for a checkpoint and let it
    run on.  The copy is held quiet (no forwarded call in flight, none taken),
    a RemoteEvent 'sending' precedes its image on this connection ('failed':
    ``error``), and it stays held until home closes the connection (home reads
    the deputy's descriptors meanwhile); then ``action``: 'none', 'stop'
    (SIGSTOP, as ``migrate PID chkstop``) or 'exit' (SIGKILL, ``chkexit``)."""

    OP: ClassVar[str] = "migrate-checkpoint"
    token: str = ""
    action: str = "none"


@message
class ProgramCheckpoint(Message):
    """Where the copy runs to its home, on the offer connection: the copy made
    MOSIX's checkpoint call (mosix_checkpoint.h).  ``call``: 1 take one now (as
    ``migrate PID checkpoint``), 2 future checkpoints go to ``file`` (as written,
    relative to the process's cwd), 3 ``value`` is -N, 4 ``value`` is -A.  Home
    answers with ProgramCheckpointAnswer on the same connection."""

    OP: ClassVar[str] = "program-checkpoint"
    token: str = ""
    call: int = 0
    value: int = 0
    file: bytes = b""


@message
class ProgramCheckpointAnswer(Message):
    """Home's answer to ProgramCheckpoint: ``result`` 0, or a negative errno for the call."""

    OP: ClassVar[str] = "program-checkpoint-answer"
    token: str = ""
    result: int = 0


@message
class RemoteEvent(Message):
    """Where the copy runs to its home: ``event`` is 'home' (it asked to come
    home: fork, exec...), 'exit' (it ended: ``status``), 'lost' (its channel
    broke), 'sending' (its image follows, ``compressed`` when BringHome asked it
    and this node can compress), 'failed' (``error``)."""

    OP: ClassVar[str] = "remote-event"
    token: str = ""
    event: str = ""
    status: int = 0
    error: str = ""
    compressed: bool = False


@message
class Migrate(Message):
    """A user's request (the migrate tool): move ``pid`` to ``target``: 'home',
    'out' (anywhere but home) or a node (number, address or host name)."""

    OP: ClassVar[str] = "migrate"
    pid: int = 0
    target: str = ""


# The deputy (mosix-deputy, C) and its home agent, on the control socket.


@message
class DeputyHello(Message):
    """The deputy of migration ``token`` is ready: send it its channel."""

    OP: ClassVar[str] = DeputyOp.HELLO.value
    pid: int = 0
    token: str = ""


@message
class DeputyLost(Message):
    """The deputy's channel broke."""

    OP: ClassVar[str] = DeputyOp.LOST.value
    pid: int = 0


@message
class DeputyStop(Message):
    """The deputy's copy was stopped by SIGSTOP: the agent stops the deputy the same
    way (the discipline sends SIGSTOP as SIGTSTP, so the deputy cannot do it itself)."""

    OP: ClassVar[str] = DeputyOp.STOP.value
    pid: int = 0


@message
class DeputyChannel(Message):
    """To the deputy, with a descriptor (SCM_RIGHTS): its channel."""

    OP: ClassVar[str] = DeputyOp.CHANNEL.value


@message
class DeputyHome(Message):
    """To the deputy, with a descriptor: the image to restore in place."""

    OP: ClassVar[str] = DeputyOp.HOME.value


@message
class DeputyEnd(Message):
    """To the deputy: end (SIGKILL), with ``error`` on the program's stderr."""

    OP: ClassVar[str] = DeputyOp.END.value
    error: str = ""


QUEUE_ACTIONS = ("run", "abort", "cngpri", "advance", "retard")
CHECKPOINT_ACTIONS = ("checkpoint", "chkstop", "chkexit")
CHECKPOINT_ORIGINS = ("manual", "program")


# ------------------------------------------------------------------ codec
#
# Each record type is compiled once into a checker: a function that checks a
# decoded CBOR value against the field types and rebuilds the dataclass.

Checker = Callable[[Any, str], Any]
_CHECKERS: dict[Any, Checker] = {}


def _plain(kind: type) -> Checker:
    def check(value: Any, where: str) -> Any:
        if type(value) is not kind:
            raise ProtocolError(f"{where}: expected {_NAMES[kind]}")
        if kind is int and not -(2**63) <= value < 2**63:
            raise ProtocolError(f"{where}: integer out of range")
        return value

    return check


_NAMES = {int: "an integer", str: "str", bytes: "bytes", bool: "bool"}


def _is_int64(value: int) -> bool:
    return -(2**63) <= value < 2**63


def _number(value: Any, where: str) -> float:
    if type(value) not in (int, float):
        raise ProtocolError(f"{where}: expected a number")
    return float(value)


def _none(value: Any, where: str) -> None:
    if value is not None:
        raise ProtocolError(f"{where}: expected nothing")


def _union(options: list[Checker]) -> Checker:
    def check(value: Any, where: str) -> Any:
        for option in options:
            try:
                return option(value, where)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where}: unexpected {type(value).__name__}")

    return check


def _list_of(item: Checker) -> Checker:
    def check(value: Any, where: str) -> Any:
        if type(value) is not list:
            raise ProtocolError(f"{where}: expected a list")
        return [item(v, where) for v in value]

    return check


def _map_of(key: Checker, val: Checker) -> Checker:
    def check(value: Any, where: str) -> Any:
        if type(value) is not dict:
            raise ProtocolError(f"{where}: expected a map")
        return {key(k, where): val(v, where) for k, v in value.items()}

    return check


def _record(cls: type) -> Checker:
    """Messages travel as maps with named fields; the records inside them as arrays
    of their fields in declaration order (compact for long listings).  An array
    may be shorter than the record when the trailing fields have defaults."""
    hints = typing.get_type_hints(cls)
    entries = [
        (f.name, checker(hints[f.name]), f.default is MISSING and f.default_factory is MISSING)
        for f in fields(cls)
    ]
    names = [name for name, _, _ in entries]
    allowed = frozenset([*names, "op"])
    plain = {int, str, bytes, bool}
    simple = [hints[n] if hints[n] in plain else None for n in names]
    required = sum(1 for _, _, req in entries if req)

    def check_map(value: dict[Any, Any], where: str) -> Any:
        kwargs = {}
        for name, check_field, is_required in entries:
            if name in value:
                kwargs[name] = check_field(value[name], where + "." + name)
            elif is_required:
                raise ProtocolError(f"{where}: field '{name}' missing")
        if not allowed.issuperset(value):
            unknown = sorted(map(str, set(value) - allowed))
            raise ProtocolError(f"{where}: unknown field '{unknown[0]}'")
        return cls(**kwargs)

    full_types = tuple(hints[n] if hints[n] in plain else list for n in names)
    int_positions = [i for i, n in enumerate(names) if hints[n] is int]
    word_lists = {list[str]: str, list[bytes]: bytes}
    word_list_kinds = [
        (i, word_lists[hints[n]]) for i, n in enumerate(names) if hints[n] in word_lists
    ]
    generic = any(hints[n] not in plain and hints[n] not in word_lists for n in names)

    def check_array(value: list[Any], where: str) -> Any:
        if (
            not generic
            and tuple(map(type, value)) == full_types
            and all(_is_int64(value[i]) for i in int_positions)
            and all(type(x) is kind for i, kind in word_list_kinds for x in value[i])
        ):
            return cls(*value)  # the common case, checked in one sweep
        if not required <= len(value) <= len(entries):
            raise ProtocolError(f"{where}: expected {len(entries)} fields, got {len(value)}")
        args = [
            item
            if kind is not None and type(item) is kind and (kind is not int or _is_int64(item))
            else check_field(item, where + "." + name)
            for item, kind, (name, check_field, _) in zip(value, simple, entries, strict=False)
        ]
        return cls(*args)

    is_message = issubclass(cls, Message)

    def check(value: Any, where: str) -> Any:
        if type(value) is dict and is_message:
            return check_map(value, where)
        if type(value) is list and not is_message:
            return check_array(value, where)
        raise ProtocolError(f"{where}: expected a {'map' if is_message else 'list'}")

    return check


def checker(hint: Any) -> Checker:
    """The (cached) checker of type ``hint``."""
    found = _CHECKERS.get(hint)
    if found is not None:
        return found
    origin = typing.get_origin(hint)
    made: Checker
    if origin in (typing.Union, types.UnionType):
        made = _union([checker(option) for option in typing.get_args(hint)])
    elif hint is type(None):
        made = _none
    elif origin is list:
        made = _list_of(checker(typing.get_args(hint)[0]))
    elif origin is dict:
        key_t, val_t = typing.get_args(hint)
        made = _map_of(checker(key_t), checker(val_t))
    elif hint is float:
        made = _number
    elif hint in (int, str, bytes, bool):
        made = _plain(hint)
    elif isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        made = _record(hint)
    else:
        raise TypeError(f"no wire form for {hint!r}")
    _CHECKERS[hint] = made
    return made


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_FLAT_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]] | None] = {}


def _flat_getter(kind: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """For a record whose fields hold no records: one C call that yields its array."""
    if kind not in _FLAT_GETTERS:
        hints = typing.get_type_hints(kind)
        nested = any(
            "__dataclass_fields__" in repr(h) or hasattr(h, "__dataclass_fields__")
            for h in hints.values()
        )
        names = [f.name for f in fields(kind)]
        flat = not nested and not issubclass(kind, Message) and len(names) > 1
        _FLAT_GETTERS[kind] = operator.attrgetter(*names) if flat else None
    return _FLAT_GETTERS[kind]


def _plain_data(value: Any) -> Any:
    """Messages as maps and the records in them as arrays, recursively."""
    kind = type(value)
    if hasattr(kind, "__dataclass_fields__"):
        getter = _flat_getter(kind)
        if getter is not None:
            return getter(value)
        names = _FIELD_NAMES.get(kind)
        if names is None:
            names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind))
        if issubclass(kind, Message):
            return {name: _plain_data(getattr(value, name)) for name in names}
        return [_plain_data(getattr(value, name)) for name in names]
    if type(value) is list:
        if value and hasattr(type(value[0]), "__dataclass_fields__"):
            getter = _flat_getter(type(value[0]))
            if getter is not None:
                return list(map(getter, value))
            return [_plain_data(v) for v in value]
        return value  # plain values need no conversion
    return value


_BREAK_MARKER = getattr(cbor2, "break_marker", object())


def decode_message(payload: bytes) -> Message:
    stream = io.BytesIO(payload)
    try:
        data = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several types for bad input
        raise ProtocolError(f"not CBOR: {e}") from None
    if data is _BREAK_MARKER:  # cbor2 < 6 returns a lone break code instead of raising
        raise ProtocolError("not CBOR: a break code where a data item was expected")
    if stream.tell() != len(payload):
        raise ProtocolError("trailing bytes after the message")
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a map")
    op = data.get("op")
    cls = MESSAGES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message {op!r}")
    built: Message = checker(cls)(data, op)
    return built


def record_size(record: Any) -> int:
    """The bytes ``record`` takes inside an encoded message (to fill frames)."""
    return len(cbor2.dumps(_plain_data(record)))


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
