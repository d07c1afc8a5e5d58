"""The mosrun command line: one typed value, its parser and its formatter.

MOSIX options carry their argument attached to the letter (``-r{host}``,
``-G3``, ``-Cfile``); options end at the program name and everything after it
belongs to the program.  ``mosenv`` takes the same arguments.

``parse(argv)`` turns the words after ``mosrun`` into a :class:`MosrunArgs`
or raises :class:`UsageError` whose text names what was wrong (the caller
prefixes ``mosrun: ``).  ``format_args(args)`` turns the value back into
words such that ``parse(format_args(a)) == a``; it is what a recursive mosrun
and the administrator's wrapper use.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from mosix.display import shown

# Limits of numeric arguments.  The manual gives those of -d, -S and -X; the
# others are bounded so that every value fits a C int in the agent and shim.
INT_MAX = 2**31 - 1
DECAY_MAX = 10000
MAXJOBS_MAX = 30000
PRIVATE_DIRS_MAX = 10
PRIVATE_DIR_LEN_MAX = 256
FORBIDDEN_PRIVATE_ROOTS = ("/etc", "/proc", "/sys", "/dev")
DEFAULT_GRID_CLASS = 1  # -G without a number


class UsageError(Exception):
    """A bad command line; the message names the offending argument.

    The message quotes the user's words as given: it is made one line of
    printable text here (mosix.display.shown), whatever they hold.
    """

    def __init__(self, message: str) -> None:
        super().__init__(shown(message))


class Unsupported(enum.Enum):
    """What happens when the program makes an unsupported system call."""

    KILL = "u"  # the default: the program is killed with a message
    ENOSYS = "e"  # the call fails with ENOSYS (and the mmap fix-up applies)
    WARN = "w"  # as ENOSYS, plus a message on stderr for each such call


class QueueMode(enum.Enum):
    KILL_ON_ABORT = "q"  # -q: killed if the queue is stopped or aborts it
    RUN_ON_ABORT = "Q"  # -Q: starts running instead


class BatchKind(enum.Enum):
    NATIVE = "E"  # -E: a native Linux batch job on another node
    MOSIX = "M"  # -M: a MOSIX batch job, possibly with another home node


# ---------------------------------------------------------------- placement


@dataclass(frozen=True)
class NodeNumbers:
    """-j item: node numbers first..last (a single number has first == last)."""

    first: int
    last: int

    def text(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Addresses:
    """-j item: IPv4 addresses first..last."""

    first: IPv4Address
    last: IPv4Address

    def text(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class HostName:
    """-j item: one host name."""

    name: str

    def text(self) -> str:
        return self.name


Candidate = NodeNumbers | Addresses | HostName


@dataclass(frozen=True)
class WhereParent:
    """No placement option: start wherever the parent process runs."""

    def option(self) -> str | None:
        return None


@dataclass(frozen=True)
class OnHost:
    host: str

    def option(self) -> str:
        return f"-r{self.host}"


@dataclass(frozen=True)
class OnAddress:
    address: IPv4Address

    def option(self) -> str:
        return f"-{self.address}"


@dataclass(frozen=True)
class OnNode:
    node: int

    def option(self) -> str:
        return f"-{self.node}"


@dataclass(frozen=True)
class OnHome:
    def option(self) -> str:
        return "-h"


@dataclass(frozen=True)
class OnBest:
    def option(self) -> str:
        return "-b"


@dataclass(frozen=True)
class AmongCandidates:
    candidates: tuple[Candidate, ...]

    def option(self) -> str:
        return "-j" + ",".join(c.text() for c in self.candidates)


Placement = WhereParent | OnHost | OnAddress | OnNode | OnHome | OnBest | AmongCandidates


# ------------------------------------------------------------- other parts


@dataclass(frozen=True)
class QueueRequest:
    mode: QueueMode
    priority: int | None  # None: the node's configured default (50)


@dataclass(frozen=True)
class BatchJob:
    kind: BatchKind
    cwd: str | None  # None: the caller's current directory


@dataclass(frozen=True)
class CommandsFile:
    """-S{maxjobs} commands-file[,failed-file]."""

    maxjobs: int
    commands: str
    failed: str | None


@dataclass(frozen=True)
class Reopen:
    """-O entry: file descriptor ``fd`` of the recovered program opens ``path``."""

    fd: int
    path: str


@dataclass(frozen=True)
class MosrunArgs:
    """Everything a mosrun command line says.

    Fields that are ``None`` were not given; for inherited fields (see
    :data:`INHERITED_FIELDS`) that means "take the caller's value".
    """

    # location options
    placement: Placement = WhereParent()
    force_elsewhere: bool = False  # -F
    auto_migrate: bool | None = None  # -L False, -l True
    grid_class: int | None = None  # -G[{class}], -G0
    duration_minutes: int | None = None  # -D{timespec}
    checkpoint_minutes: int | None = None  # -A{minutes}
    checkpoint_max: int | None = None  # -N{max}
    queue: QueueRequest | None = None  # -q[{pri}] / -Q[{pri}]
    parallel: int | None = None  # -P{n}
    job_id: int | None = None  # -J{id or token}
    # program options
    memory_mb: int | None = None  # -m{mb}
    decay: int | None = None  # -d{0-10000}
    io_aware: bool | None = None  # -c False, -n True
    args_from_zero: bool = False  # -z
    unsupported: Unsupported | None = None  # -e / -u / -w
    local_time: bool | None = None  # -t True, -T False
    batch: BatchJob | None = None  # -E[/{cwd}] / -M[/{cwd}]
    exclusive_stdin: bool = False  # -i
    checkpoint_file: str | None = None  # -C{file}
    private_dirs: tuple[str, ...] = ()  # -X{/dir}...
    # what to do
    admin: bool = False  # -g: called by the administrator's wrapper
    commands: CommandsFile | None = None  # -S
    recover: str | None = None  # -R{file}
    reopen: tuple[Reopen, ...] = ()  # -O
    inspect: str | None = None  # -I{file}
    program: tuple[str, ...] = ()  # the program and its arguments

    def argv(self) -> list[str]:
        """The program's argument vector (``-z``: arguments begin at #0)."""
        if self.args_from_zero:
            return list(self.program[1:])
        return list(self.program)


# The fields that child processes inherit and that an inner (recursive)
# mosrun preserves unless it overrides them.  The manual lists the options
# -G -L -l -m -d -c -n -e -u -t -T (children) and -c -d -e -J -G -L -l -m -n
# -T -t -u -w (inner mosrun); -J is inherited by children as well (QUEUING).
# As fields the two lists coincide: -w is one value of the unsupported-call
# mode, which children keep.  -C, -N and -A are explicitly not inherited.
INHERITED_FIELDS: tuple[str, ...] = (
    "auto_migrate",
    "grid_class",
    "job_id",
    "memory_mb",
    "decay",
    "io_aware",
    "unsupported",
    "local_time",
)

# Options that -R refuses: their values come from the checkpoint file.
PROGRAM_OPTION_FIELDS: tuple[str, ...] = (
    "memory_mb",
    "decay",
    "io_aware",
    "args_from_zero",
    "unsupported",
    "local_time",
    "batch",
    "exclusive_stdin",
    "checkpoint_file",
    "private_dirs",
)


def inherited_part(args: MosrunArgs) -> MosrunArgs:
    """Only the fields a child or an inner mosrun takes from ``args``."""
    return MosrunArgs(**{name: getattr(args, name) for name in INHERITED_FIELDS})


def inherit(outer: MosrunArgs, inner: MosrunArgs) -> MosrunArgs:
    """``inner`` with every inherited field it leaves unset taken from ``outer``."""
    taken = {
        name: getattr(outer, name)
        for name in INHERITED_FIELDS
        if getattr(inner, name) is None and getattr(outer, name) is not None
    }
    return replace(inner, **taken)


# ------------------------------------------------------------------ parsing

JobIdResolver = Callable[[str], int | None]


class _Pattern:
    """A regular expression compiled when first matched (re's cache keeps it): ``mosrun
    prog`` uses none, and compiling them all at import was a fifth of its import."""

    def __init__(self, source: str) -> None:
        self.source = source

    def match(self, text: str) -> re.Match[str] | None:
        return re.match(self.source, text)


_DIGITS = _Pattern(r"[0-9]+\Z")
_IPV4 = _Pattern(r"[0-9]{1,3}(\.[0-9]{1,3}){3}\Z")
_NODE_RANGE = _Pattern(r"([0-9]+)-([0-9]+)\Z")
_ADDR_RANGE = _Pattern(r"([0-9.]+)-([0-9.]+)\Z")
_HOST_LABEL = _Pattern(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_COLON_TIME = _Pattern(r"([0-9]+):([0-9]+)(?::([0-9]+))?\Z")
_LETTER_TIME = _Pattern(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?\Z")


def _number(opt: str, text: str, what: str, lo: int = 0, hi: int = INT_MAX) -> int:
    if not _DIGITS.match(text):
        raise UsageError(f"{opt}: {what} must be a whole number from {lo} to {hi}")
    value = int(text)
    if not lo <= value <= hi:
        raise UsageError(f"{opt}: {what} must be a whole number from {lo} to {hi}")
    return value


def _address(opt: str, text: str) -> IPv4Address:
    if not _IPV4.match(text) or any(int(part) > 255 for part in text.split(".")):
        raise UsageError(f"{opt}: '{text}' is not an IPv4 address")
    return IPv4Address(text)


def valid_host_name(name: str) -> bool:
    if not name or len(name) > 253 or _DIGITS.match(name.replace(".", "")):
        return False
    return all(_HOST_LABEL.match(label) for label in name.removesuffix(".").split("."))


def _candidate(opt: str, item: str) -> Candidate:
    if not item:
        raise UsageError(f"{opt}: empty entry in the list of hosts")
    if m := _NODE_RANGE.match(item):
        first = _number(opt, m[1], "a node number", 1)
        last = _number(opt, m[2], "a node number", 1)
        if last < first:
            raise UsageError(f"{opt}: range '{item}' ends before it begins")
        return NodeNumbers(first, last)
    if _DIGITS.match(item):
        node = _number(opt, item, "a node number", 1)
        return NodeNumbers(node, node)
    if (m := _ADDR_RANGE.match(item)) and "." in item:
        first_addr, last_addr = _address(opt, m[1]), _address(opt, m[2])
        if last_addr < first_addr:
            raise UsageError(f"{opt}: range '{item}' ends before it begins")
        return Addresses(first_addr, last_addr)
    if _IPV4.match(item) or re.fullmatch(r"[0-9.]+", item):
        addr = _address(opt, item)
        return Addresses(addr, addr)
    if not valid_host_name(item):
        raise UsageError(f"{opt}: '{item}' is not a host name, IPv4 address or node number")
    return HostName(item)


def parse_timespec(opt: str, text: str) -> int:
    """-D{timespec} in any of the manual's nine formats, as minutes.

    DD:HH:MM, HH:MM, DDd, HHh, MMm, DDdHHhMMm, DDdHHh, DDdMMm, HHhMMm.  The
    leading unit may be any size; the units after it are bounded as a clock
    writes them (hours below 24, minutes below 60).
    """
    days = hours = minutes = 0
    hours_bounded = minutes_bounded = False
    if m := _COLON_TIME.match(text):
        if m[3] is None:
            hours, minutes = int(m[1]), int(m[2])
        else:
            days, hours, minutes = int(m[1]), int(m[2]), int(m[3])
            hours_bounded = True
        minutes_bounded = True
    elif text and (m := _LETTER_TIME.match(text)):
        days, hours, minutes = (int(g or 0) for g in m.groups())
        hours_bounded = m[1] is not None
        minutes_bounded = m[1] is not None or m[2] is not None
    else:
        raise UsageError(
            f"{opt}: '{text}' is not a time: use DD:HH:MM, HH:MM, DDd, HHh, MMm, "
            "DDdHHhMMm, DDdHHh, DDdMMm or HHhMMm"
        )
    if hours_bounded and hours >= 24:
        raise UsageError(f"{opt}: '{text}': hours must be below 24")
    if minutes_bounded and minutes >= 60:
        raise UsageError(f"{opt}: '{text}': minutes must be below 60")
    total = (days * 24 + hours) * 60 + minutes
    if total > INT_MAX:
        raise UsageError(f"{opt}: '{text}' is too long a time")
    return total


def format_timespec(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}d{hours}h{mins}m"


def check_private_dir(opt: str, path: str) -> str:
    """-X rules from the manual; returns the directory without trailing '/'."""
    if not path:
        raise UsageError(f"{opt}: directory missing")
    if not path.startswith("/"):
        raise UsageError(f"{opt}: directory must start with '/'")
    if len(path) > PRIVATE_DIR_LEN_MAX:
        raise UsageError(f"{opt}: directory is longer than {PRIVATE_DIR_LEN_MAX} characters")
    if ".." in path:
        raise UsageError(f"{opt}: directory cannot include '..'")
    if "\0" in path:
        raise UsageError(f"{opt}: directory contains a NUL character")
    normal = re.sub("/+", "/", path)
    normal = normal.rstrip("/") or "/"
    if normal == "/":
        raise UsageError(f"{opt}: the root directory cannot be private")
    for root in FORBIDDEN_PRIVATE_ROOTS:
        if normal == root or normal.startswith(root + "/"):
            raise UsageError(f"{opt}: directory cannot be within {root}")
    return normal


def parse_reopen(opt: str, text: str) -> list[Reopen]:
    """-O{fd=file}[,{fd=file}]... or, with another separator, -O@1=a,b@2=c."""
    if not text:
        raise UsageError(f"{opt}: missing fd=file")
    sep = ","
    if not text[0].isdigit():
        sep, text = text[0], text[1:]
        if not text:
            raise UsageError(f"{opt}: missing fd=file")
    out = []
    for item in text.split(sep):
        fd_text, eq, path = item.partition("=")
        if not eq or not path or not fd_text:
            raise UsageError(f"{opt}: '{item}' is not fd=file")
        fd = _number(opt, fd_text, "a file descriptor")
        out.append(Reopen(fd, path))
    return out


def _commands_file(opt: str, text: str, maxjobs: int) -> CommandsFile:
    commands, comma, failed = text.partition(",")
    if not commands:
        raise UsageError(f"{opt}: commands-file missing")
    if comma and not failed:
        raise UsageError(f"{opt}: failed-commands file name missing after ','")
    return CommandsFile(maxjobs, commands, failed or None)


def read_jobids(path: str) -> dict[str, int]:
    """Tokens of $HOME/.jobids: each line 'number token'; other lines ignored."""
    table: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and _DIGITS.match(words[0]) and int(words[0]) <= INT_MAX:
                    table.setdefault(words[1], int(words[0]))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise UsageError(f"-J: cannot read {path}: {e.strerror}") from None
    return table


def home_jobids_resolver() -> JobIdResolver:
    import os

    path = os.path.join(os.path.expanduser("~"), ".jobids")

    def resolve(token: str) -> int | None:
        return read_jobids(path).get(token)

    return resolve


def parse_job_id(word: str, text: str, jobids: JobIdResolver | None) -> int:
    """A job ID as the manual allows it (mosrun -J, migrate -j, mosq -j, moskillall
    -J, mosps -J): a non-negative number or a token of $HOME/.jobids."""
    if not text:
        raise UsageError(f"{word}: job ID missing")
    if _DIGITS.match(text):
        return _number(word, text, "the job ID")
    resolved = jobids(text) if jobids else None
    if resolved is None:
        raise UsageError(f"{word}: '{text}' is neither a number nor a token in ~/.jobids")
    return resolved


class _Parser:
    def __init__(self, argv: Sequence[str], jobids: JobIdResolver | None) -> None:
        self.words = list(argv)
        self.pos = 0
        self.jobids = jobids
        self.values: dict[str, object] = {}
        self.placement_word: str | None = None
        self.private_dirs: list[str] = []
        self.reopen: list[Reopen] = []
        self.seen: list[str] = []  # option words in order, for error messages

    def set(self, name: str, value: object) -> None:
        self.values[name] = value

    def set_placement(self, word: str, value: Placement) -> None:
        old = self.values.get("placement")
        if old is not None and old != value:
            raise UsageError(f"{word}: conflicts with {self.placement_word} (give one placement)")
        self.placement_word = word
        self.set("placement", value)

    def attached_or_next(self, word: str, rest: str) -> str:
        """-X and -d are written with a space in the manual: accept both."""
        if rest:
            return rest
        if self.pos < len(self.words):
            self.pos += 1
            return self.words[self.pos - 1]
        return ""

    def option(self, word: str) -> None:
        letter, rest = word[1], word[2:]
        self.seen.append(word)
        match letter:
            case "r":
                if not rest:
                    raise UsageError(f"{word}: host name missing")
                if not valid_host_name(rest):
                    raise UsageError(f"{word}: '{rest}' is not a valid host name")
                self.set_placement(word, OnHost(rest))
            case (
                "h"
                | "b"
                | "F"
                | "L"
                | "l"
                | "c"
                | "n"
                | "z"
                | "e"
                | "u"
                | "w"
                | "t"
                | "T"
                | "i"
                | "g"
            ):
                if rest:
                    raise UsageError(f"{word}: unknown option (-{letter} takes no argument)")
                self.flag(word, letter)
            case "j":
                if not rest:
                    raise UsageError(f"{word}: list of hosts missing")
                candidates = tuple(_candidate(word, item) for item in rest.split(","))
                self.set_placement(word, AmongCandidates(candidates))
            case "G":
                self.set(
                    "grid_class",
                    DEFAULT_GRID_CLASS if not rest else _number(word, rest, "the class"),
                )
            case "D":
                self.set("duration_minutes", parse_timespec(word, rest))
            case "A":
                self.set("checkpoint_minutes", _number(word, rest, "the interval in minutes", 1))
            case "N":
                self.set("checkpoint_max", _number(word, rest, "the number of checkpoints"))
            case "q" | "Q":
                mode = QueueMode(letter)
                pri = None if not rest else _number(word, rest, "the priority")
                self.set("queue", QueueRequest(mode, pri))
            case "P":
                self.set("parallel", _number(word, rest, "the number of processes", 1))
            case "J":
                self.set("job_id", parse_job_id(word, rest, self.jobids))
            case "m":
                self.set("memory_mb", _number(word, rest, "the memory size in MB"))
            case "d":
                value = self.attached_or_next(word, rest)
                self.set("decay", _number("-d", value, "the decay", 0, DECAY_MAX))
            case "E" | "M":
                kind = BatchKind(letter)
                if rest and not rest.startswith("/"):
                    raise UsageError(f"{word}: directory must start with '/'")
                old = self.values.get("batch")
                if isinstance(old, BatchJob) and old.kind != kind:
                    raise UsageError(f"{word}: conflicts with -{old.kind.value} (give -E or -M)")
                self.set("batch", BatchJob(kind, rest or None))
            case "C":
                if not rest:
                    raise UsageError(f"{word}: checkpoint file name missing")
                self.set("checkpoint_file", rest)
            case "X":
                path = check_private_dir("-X", self.attached_or_next(word, rest))
                if path not in self.private_dirs:
                    self.private_dirs.append(path)
                if len(self.private_dirs) > PRIVATE_DIRS_MAX:
                    raise UsageError(f"-X: at most {PRIVATE_DIRS_MAX} private directories")
            case "S":
                self.set("maxjobs", _number(word, rest, "maxjobs", 1, MAXJOBS_MAX))
            case "R":
                if not rest:
                    raise UsageError(f"{word}: checkpoint file name missing")
                self.set("recover", rest)
            case "O":
                for entry in parse_reopen(word, rest):
                    if any(r.fd == entry.fd for r in self.reopen):
                        raise UsageError(f"{word}: file descriptor {entry.fd} given twice")
                    self.reopen.append(entry)
            case "I":
                if not rest:
                    raise UsageError(f"{word}: checkpoint file name missing")
                self.set("inspect", rest)
            case _ if letter.isdigit():
                if "." in rest or _IPV4.match(word[1:]):
                    self.set_placement(word, OnAddress(_address(word, word[1:])))
                elif _DIGITS.match(word[1:]):
                    self.set_placement(word, OnNode(_number(word, word[1:], "the node number", 1)))
                else:
                    raise UsageError(f"{word}: not a node number or IPv4 address")
            case _:
                raise UsageError(f"{word}: unknown option")

    def flag(self, word: str, letter: str) -> None:
        match letter:
            case "h":
                self.set_placement(word, OnHome())
            case "b":
                self.set_placement(word, OnBest())
            case "F":
                self.set("force_elsewhere", True)
            case "L" | "l":
                self.set("auto_migrate", letter == "l")
            case "c" | "n":
                self.set("io_aware", letter == "n")
            case "e" | "u" | "w":
                self.set("unsupported", Unsupported(letter))
            case "t" | "T":
                self.set("local_time", letter == "t")
            case "z":
                self.set("args_from_zero", True)
            case "i":
                self.set("exclusive_stdin", True)
            case "g":
                self.set("admin", True)

    def run(self) -> MosrunArgs:
        while self.pos < len(self.words):
            word = self.words[self.pos]
            if word == "--":
                self.pos += 1
                break
            if word == HELP_OPTION:
                raise HelpRequested()
            if len(word) < 2 or not word.startswith("-"):
                break
            self.pos += 1
            self.option(word)
        rest = self.words[self.pos :]
        return self.finish(rest)

    def finish(self, rest: list[str]) -> MosrunArgs:
        v = self.values
        maxjobs = v.pop("maxjobs", None)
        if self.private_dirs:
            v["private_dirs"] = tuple(self.private_dirs)
        if self.reopen:
            v["reopen"] = tuple(self.reopen)
        inspect, recover = v.get("inspect"), v.get("recover")
        if inspect is not None:
            others = [w for w in self.seen if not w.startswith(("-I", "-g"))]
            if others:
                raise UsageError(f"-I: takes no other options (got {others[0]})")
            if rest:
                raise UsageError(f"-I: takes no program (got '{rest[0]}')")
            return MosrunArgs(**v)  # type: ignore[arg-type]
        if self.reopen and recover is None:
            raise UsageError("-O: only applies with -R{file}")
        if recover is not None:
            if maxjobs is not None:
                raise UsageError("-R: cannot be combined with -S")
            for name in PROGRAM_OPTION_FIELDS:
                if name in v:
                    word = self.word_for(name)
                    raise UsageError(
                        f"{word}: program options are not permitted with -R "
                        "(they are recovered from the checkpoint)"
                    )
            if rest:
                raise UsageError(f"-R: takes no program (got '{rest[0]}')")
            return MosrunArgs(**v)  # type: ignore[arg-type]
        if maxjobs is not None:
            if not rest:
                raise UsageError(f"-S{maxjobs}: commands-file missing")
            if len(rest) > 1:
                raise UsageError(f"-S{maxjobs}: unexpected '{rest[1]}' after the commands-file")
            v["commands"] = _commands_file(f"-S{maxjobs}", rest[0], maxjobs)
            return MosrunArgs(**v)  # type: ignore[arg-type]
        if not rest:
            raise UsageError("no program given")
        if v.get("args_from_zero") and len(rest) < 2:
            raise UsageError("-z: argument #0 missing after the program name")
        v["program"] = tuple(rest)
        return MosrunArgs(**v)  # type: ignore[arg-type]

    def word_for(self, name: str) -> str:
        letters = _FIELD_LETTERS[name]
        for word in self.seen:
            if word[1] in letters:
                return word
        return "-" + letters[0]


_FIELD_LETTERS: dict[str, str] = {
    "memory_mb": "m",
    "decay": "d",
    "io_aware": "cn",
    "args_from_zero": "z",
    "unsupported": "euw",
    "local_time": "tT",
    "batch": "EM",
    "exclusive_stdin": "i",
    "checkpoint_file": "C",
    "private_dirs": "X",
}


def parse(argv: Sequence[str], jobids: JobIdResolver | None = None) -> MosrunArgs:
    """Parse the words after ``mosrun``; raises :class:`UsageError`, or
    :class:`HelpRequested` for ``--help`` among the options."""
    return _Parser(argv, jobids).run()


# ----------------------------------------------------------------- synopsis
# What --help prints and the man page (python -m mosix.generate) says: every option
# the parser above takes, as the manual writes it (a test holds the two together).

HELP_OPTION = "--help"  # -h is a placement (the home node), as in MOSIX


class HelpRequested(Exception):
    """``--help`` among the options: print :func:`synopsis`, exit 0."""


USAGE_LINES = (
    "[location_options] [program_options] program [args]...",
    "-S{maxjobs} [location_options] [program_options] {commands-file}[,{failed-file}]",
    "-R{filename} [-O{fd=filename}[,{fd2=fn2}]]... [location_options]",
    "-I{filename}",
)

LOCATION_OPTIONS: tuple[tuple[str, str], ...] = (
    ("-r{hostname}", "start on the given host"),
    ("-{a.b.c.d}", "start on the given IP address"),
    ("-{n}", "start on the given node number"),
    ("-h", "start on the home node"),
    ("-b", "start on the best node"),
    ("-j{ID1-ID2}[,{ID3}]...", "start on one of these hosts, addresses or node numbers"),
    ("-F", "start elsewhere if the requested node is not available"),
    ("-L", "no automatic migration"),
    ("-l", "automatic migration allowed (the default)"),
    ("-G[{class}]", "may migrate to other clusters of this class"),
    ("-D{DD:HH:MM}", "estimated run time (also 1d2h3m)"),
    ("-A{minutes}", "checkpoint every so many minutes"),
    ("-N{max}", "keep at most max checkpoints (0: unlimited)"),
    ("-q[{pri}]", "queue the job (killed if the queue aborts it)"),
    ("-Q[{pri}]", "queue the job (it runs if the queue aborts it)"),
    ("-P{processes}", "the job runs this many processes (for the queue)"),
    ("-J{JobID}", "belong to this job (a number or a token in ~/.jobids)"),
)

PROGRAM_OPTIONS: tuple[tuple[str, str], ...] = (
    ("-m{mb}", "needs this much memory"),
    ("-d {0-10000}", "decay of the process statistics"),
    ("-c", "leave system calls and I/O out of migration decisions"),
    ("-n", "take system calls and I/O into account (the default)"),
    ("-z", "the program's arguments begin at argument #0"),
    ("-u", "an unsupported system call kills the program (the default)"),
    ("-e", "an unsupported system call fails with ENOSYS"),
    ("-w", "as -e, with a warning for each such call"),
    ("-t", "time calls read the clock where the program runs"),
    ("-T", "time calls read the home node's clock (the default)"),
    ("-E[/{cwd}]", "a native Linux batch job on another node"),
    ("-M[/{cwd}]", "a MOSIX batch job"),
    ("-i", "all of the standard input is for this batch job"),
    ("-C{filename}", "where to save checkpoints"),
    ("-X{/directory}", "a private temporary directory (up to 10)"),
    ("-g", "called by the administrator's wrapper"),
)

SPECIAL_OPTIONS: tuple[tuple[str, str], ...] = (
    ("-S{maxjobs}", "run each line of commands-file, at most maxjobs at a time"),
    ("-R{filename}", "recover a checkpoint"),
    ("-O{fd=filename}", "with -R: open this file at this descriptor"),
    ("-I{filename}", "list a checkpoint's open files"),
    ("--help", "print this synopsis"),
)

SYNOPSIS_SECTIONS = (
    ("Location options", LOCATION_OPTIONS),
    ("Program options", PROGRAM_OPTIONS),
    ("Other options", SPECIAL_OPTIONS),
)


def synopsis(prog: str) -> str:
    """The usage lines and every option, one line each (``mosrun --help``)."""
    lines = [f"usage: {prog} {line}" for line in USAGE_LINES]
    for title, options in SYNOPSIS_SECTIONS:
        lines += ["", f"{title}:"]
        lines += [f"  {words:<24} {text}" for words, text in options]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------- formatting

_SEPARATORS = "@#%:;!^+~|" + string.ascii_letters


def _format_reopen(entry: Reopen) -> str:
    if "," not in entry.path:
        return f"-O{entry.fd}={entry.path}"
    for sep in _SEPARATORS:
        if sep not in entry.path:
            return f"-O{sep}{entry.fd}={entry.path}"
    raise UsageError(f"-O: cannot write file name '{entry.path}' on a command line")


def format_args(args: MosrunArgs) -> list[str]:
    """The words that :func:`parse` turns back into ``args``."""
    out: list[str] = []
    if args.admin:
        out.append("-g")
    if args.inspect is not None:
        return [*out, f"-I{args.inspect}"]
    place = args.placement.option()
    if place is not None:
        out.append(place)
    if args.grid_class is not None:
        out.append(f"-G{args.grid_class}")
    if args.force_elsewhere:
        out.append("-F")
    if args.auto_migrate is not None:
        out.append("-l" if args.auto_migrate else "-L")
    if args.duration_minutes is not None:
        out.append(f"-D{format_timespec(args.duration_minutes)}")
    if args.checkpoint_minutes is not None:
        out.append(f"-A{args.checkpoint_minutes}")
    if args.checkpoint_max is not None:
        out.append(f"-N{args.checkpoint_max}")
    if args.queue is not None:
        pri = "" if args.queue.priority is None else str(args.queue.priority)
        out.append(f"-{args.queue.mode.value}{pri}")
    if args.parallel is not None:
        out.append(f"-P{args.parallel}")
    if args.job_id is not None:
        out.append(f"-J{args.job_id}")
    if args.memory_mb is not None:
        out.append(f"-m{args.memory_mb}")
    if args.decay is not None:
        out.append(f"-d{args.decay}")
    if args.io_aware is not None:
        out.append("-n" if args.io_aware else "-c")
    if args.args_from_zero:
        out.append("-z")
    if args.unsupported is not None:
        out.append(f"-{args.unsupported.value}")
    if args.local_time is not None:
        out.append("-t" if args.local_time else "-T")
    if args.batch is not None:
        out.append(f"-{args.batch.kind.value}{args.batch.cwd or ''}")
    if args.exclusive_stdin:
        out.append("-i")
    if args.checkpoint_file is not None:
        out.append(f"-C{args.checkpoint_file}")
    out += [f"-X{d}" for d in args.private_dirs]
    if args.recover is not None:
        out.append(f"-R{args.recover}")
        out += [_format_reopen(r) for r in args.reopen]
        return out
    if args.commands is not None:
        c = args.commands
        out.append(f"-S{c.maxjobs}")
        if c.commands.startswith("-"):
            out.append("--")
        out.append(c.commands + ("" if c.failed is None else f",{c.failed}"))
        return out
    if args.program and args.program[0].startswith("-"):
        out.append("--")
    return out + list(args.program)


def inherited_words(args: MosrunArgs) -> list[str]:
    """The inherited settings of ``args`` as option words (for the environment)."""
    return format_args(inherited_part(args))


def parse_inherited_words(words: Sequence[str]) -> MosrunArgs:
    """Inverse of :func:`inherited_words`; anything but inherited fields is dropped."""
    return inherited_part(parse([*words, "--", "true"]))
