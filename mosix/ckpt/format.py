"""The checkpoint image format: the one definition of every field.

``csrc/generated/ckpt_format.h`` (the structs the C capturer and restorer
use) and docs/IMAGE.md are generated from this module (``python -m
mosix.generate``); a test fails when either is stale.

An image is a byte stream, written and read strictly in order (no seeks), so
the same bytes can go to a file or down a socket to another node:

    FILE HEADER        fixed, 64 bytes, checksummed
    RECORD*            each: a 32-byte record header, then ``length`` bytes

A multi-threaded process's main thread (the one whose id is the pid) is
PROCESS, REGS and XSTATE; every other thread is one THREAD record, and the
signals pending when it was captured (per thread and process-wide) are
SIGNAL records, both between SIGACTIONS and the first AREA, followed by a
TIMER record per POSIX timer (timer_create).

A checkpoint file meant for recovery where it was taken stores the unchanged
pages of private file mappings (libraries, the executable: pages never
written, per the page tables) as a reference: a MAPFILE record per file
(identity and a hash of the pages referenced) before the first AREA, and the
area flagged REFERENCE; only the pages written since they were mapped are
stored.  A move's image (and any image for another node) stores every page.

Every record header carries the record's kind, its sequence number (0, 1,
2, ...), the payload's length and checksum, and a checksum of the header
itself.  The last record is END, which repeats the count of records: a
truncated, reordered, or spliced image is refused, as is any payload whose
checksum differs.  Records come in the order of ``ORDER``: everything that
``mosrun -I`` needs (PROCESS, OPTIONS, CWD, FILE...) comes before the first
memory record, so the header part is read without touching memory.

All integers are little-endian, fields are naturally aligned and every
struct is a multiple of 8 bytes (explicit padding, checked here).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

MAGIC = b"MOSIXCKP"
# 2: THREAD, SIGNAL and TIMER records, PROCESS.threads and tcb_tid_offset
# 3: MAPFILE records and AreaFlag.REFERENCE (file pages referenced, not stored)
VERSION = 3
# the oldest version readers still read (2 is 3 without PRIVATE, MAPFILE and pre-copy records)
OLDEST_VERSION = 2
ARCH_X86_64 = 62  # ELF e_machine
PAGE_SIZE = 4096
FAILED_PREFIX = b"mosrun: "  # an image that failed holds just a one-line message

# Hostile-input limits: every reader refuses values past these.
MAX_RECORD_BYTES = 64 << 20  # one record's payload
# A private file's contents per record (FILE, then MOREs): mosix-ckpt writes a
# record in one piece of its 8 MiB stream chunks.
PRIVATE_PART_BYTES = 4 << 20
MAX_PAGES_PER_RECORD = (MAX_RECORD_BYTES - 16) // PAGE_SIZE
MAX_PATH = 4096
MAX_XSAVE = 16384
MAX_AREAS = 65536
MAX_FILES = 1024  # RLIMIT_NOFILE is fixed at 1024 under the discipline
MAX_THREADS = 512  # threads of one process, the main one included
MAX_SIGNALS = 4096  # pending signals (SIGNAL records)
MAX_TIMERS = 1024  # POSIX timers (TIMER records)
MAX_MAPFILES = 1024  # files whose pages are referenced (MAPFILE records)
MAX_TCB_TID_OFFSET = 0x1000  # where glibc's cached tid may be, from the thread pointer
SIGINFO_SIZE = 128
USER_LOW = 0x1000  # lowest address an area may start at
USER_HIGH = 0x7FFFFFFFF000  # areas end at or below (x86-64, 4-level paging)

# The restorer (csrc/restore/mosix_restore.c, static, not PIE) is linked at RESTORER_BASE and
# owns [RESTORER_BASE, +RESTORER_SPAN).  It leaves its trampoline (the code that
# unmaps the restorer, and the signal frame it resumes the program from) at
# [TRAMPOLINE, +TRAMPOLINE_SPAN) in the recovered process (a code page, a page of
# the threads' barrier, and per thread its frame and XSAVE copy); a later capture
# skips that range.  An image with an area anywhere in [TRAMPOLINE, RESTORER_BASE +
# RESTORER_SPAN) is refused.
RESTORER_BASE = 0x200000000000
RESTORER_SPAN = 0x1000000
TRAMPOLINE = RESTORER_BASE - 0x1000000
TRAMPOLINE_SPAN = 0x1000000


class Kind(enum.IntEnum):
    """Record kinds, in the order they appear in an image."""

    PROCESS = 1  # identity and kernel state (ProcessRecord)
    OPTIONS = 2  # text: the mosrun settings to recover with (KEY=VALUE lines)
    CWD = 3  # the current directory's path (bytes)
    FILE = 4  # one open descriptor (FileRecord + path)
    FILEDATA = 5  # a piece of an unlinked file's contents (FileDataRecord + bytes)
    REGS = 6  # general registers (Regs)
    XSTATE = 7  # the XSAVE area in the standard (non-compacted) layout
    SIGACTIONS = 8  # 64 x SigAction, for signals 1..64
    AREA = 9  # one memory area (AreaRecord + name)
    PAGES = 10  # pages of the last AREA (PagesRecord + npages * PAGE_SIZE bytes)
    END = 11  # EndRecord
    THREAD = 12  # a thread other than the main one (ThreadRecord + XSAVE area)
    SIGNAL = 13  # a pending signal (SignalRecord)
    TIMER = 14  # a POSIX timer (TimerRecord)
    PRIVATE = 15  # a private temporary directory (mosrun -X) or a file in it (PrivateRecord)
    MAPFILE = 16  # a file whose unchanged pages are referenced, not stored (MapFileRecord + path)
    # Live migration's pre-copy rounds (a migration's stream only, never a file): between
    # the file header and PROCESS, sent while the process runs on at home.
    PRE_AREA = 17  # an anonymous private area copied ahead (AreaRecord + name)
    PRE_PAGES = 18  # pages of PRE_AREAs, any of them, ascending per round (PagesRecord + pages)


# Records that may repeat; the others appear exactly once, in ORDER.
REPEATED = frozenset(
    {
        *(Kind.FILE, Kind.FILEDATA, Kind.PRIVATE, Kind.THREAD, Kind.SIGNAL, Kind.TIMER),
        *(Kind.MAPFILE, Kind.AREA, Kind.PAGES, Kind.PRE_AREA, Kind.PRE_PAGES),
    }
)
# Before PROCESS in a migration's stream: PRE_AREA..., then PRE_PAGES... per round.
PRECOPY = (Kind.PRE_AREA, Kind.PRE_PAGES)
ORDER = (
    Kind.PROCESS,
    Kind.OPTIONS,
    Kind.CWD,
    Kind.FILE,
    Kind.FILEDATA,
    Kind.PRIVATE,
    Kind.REGS,
    Kind.XSTATE,
    Kind.SIGACTIONS,
    Kind.THREAD,
    Kind.SIGNAL,
    Kind.TIMER,
    Kind.MAPFILE,
    Kind.AREA,  # AREA, PAGES*, AREA, PAGES*, ...
    Kind.END,
)


class FileKind(enum.IntEnum):
    REGULAR = 1  # reopened by path with the same flags and offset
    DIRECTORY = 2  # reopened by path
    # terminal, device, or a standard stream's pipe/socket: the caller's fd or /dev/null
    SPECIAL = 3
    UNLINKED = 4  # deleted regular file: contents follow in FILEDATA records
    PIPE = 5  # (never in a good image: a checkpoint with one fails)
    SOCKET = 6  # (likewise)
    OTHER = 7  # anon inodes (eventfd, epoll, memfd...): /dev/null on recovery


class PrivateKind(enum.IntEnum):
    DIRECTORY = 1  # a private directory (mosrun -X): recovered with one
    FILE = 2  # a regular file in the last DIRECTORY record, with its contents
    MORE = 3  # the next part of the last FILE record's file (its name), appended


class AreaFlag(enum.IntFlag):
    SHARED = 0x1  # MAP_SHARED (a good image has none writable)
    FILE = 0x2  # backed by a file (name is its path); contents are stored anyway
    STACK = 0x4  # the main stack: restored with MAP_GROWSDOWN
    HEAP = 0x8  # [heap]
    VDSO = 0x10  # [vdso]: not stored, the restorer moves its own here
    VVAR = 0x20  # [vvar]: likewise
    VVAR_VCLOCK = 0x40  # [vvar_vclock]: likewise
    DELETED = 0x80  # the backing file was deleted
    RESTORER = 0x100  # the restorer's leftover trampoline: never stored
    # a private file mapping whose pages not stored are its file's (MAPFILE[area.mapfile]),
    # mapped from it on recovery; the pages written since it was mapped are stored
    REFERENCE = 0x200
    PRECOPIED = 0x400  # the PRE_AREA of the same span keeps its pages; PAGES: the changed ones


class ShimKind(enum.IntEnum):
    NONE = 0  # no shim filter (static program, or the shim stayed out)
    NOTIFY = 1  # MOSIX_FILTER_SHIM_NOTIFY (-u, -w)
    ENOSYS = 2  # MOSIX_FILTER_SHIM_ENOSYS (-e)


# ------------------------------------------------------------------ structs

# C type -> (struct code, size)
CTYPES: dict[str, tuple[str, int]] = {
    "uint8_t": ("B", 1),
    "uint16_t": ("H", 2),
    "uint32_t": ("I", 4),
    "int32_t": ("i", 4),
    "uint64_t": ("Q", 8),
    "int64_t": ("q", 8),
    "char": ("s", 1),
}


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    count: int = 1  # array length (for char: a byte string of that length)
    doc: str = ""


@dataclass(frozen=True)
class Struct:
    name: str  # C name: struct mosix_ckpt_<name>
    doc: str
    fields: tuple[Field, ...]

    @property
    def fmt(self) -> str:
        parts = []
        for f in self.fields:
            code, _ = CTYPES[f.ctype]
            if f.ctype == "char":
                parts.append(f"{f.count}s")
            else:
                parts.append(f"{f.count}{code}" if f.count > 1 else code)
        return "<" + "".join(parts)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def offsets(self) -> dict[str, int]:
        """Field offsets; raises if a field is not naturally aligned."""
        out: dict[str, int] = {}
        at = 0
        for f in self.fields:
            _, size = CTYPES[f.ctype]
            if at % size:
                raise ValueError(f"{self.name}.{f.name} at {at} is not {size}-aligned")
            out[f.name] = at
            at += size * f.count
        if at % 8:
            raise ValueError(f"{self.name} is {at} bytes, not a multiple of 8")
        return out

    def unpack(self, data: bytes) -> dict[str, object]:
        values = struct.unpack(self.fmt, data[: self.size])
        out: dict[str, object] = {}
        i = 0
        for f in self.fields:
            if f.count > 1 and f.ctype != "char":
                out[f.name] = tuple(values[i : i + f.count])
                i += f.count
            else:
                out[f.name] = values[i]
                i += 1
        return out

    def pack(self, **values: object) -> bytes:
        flat: list[object] = []
        for f in self.fields:
            v = values.get(f.name)
            if f.count > 1 and f.ctype != "char":
                seq = list(v) if v is not None else []  # type: ignore[call-overload]
                flat += seq + [0] * (f.count - len(seq))
            elif f.ctype == "char":
                flat.append(v if v is not None else b"")
            else:
                flat.append(v if v is not None else 0)
        return struct.pack(self.fmt, *flat)


def F(name: str, ctype: str, count: int = 1, doc: str = "") -> Field:
    return Field(name, ctype, count, doc)


FILE_HEADER = Struct(
    "file_header",
    "The first 64 bytes of an image.",
    (
        F("magic", "char", 8, '"MOSIXCKP"'),
        F("version", "uint32_t", doc="VERSION; outside [OLDEST_VERSION, VERSION]: refused"),
        F("arch", "uint32_t", doc="ELF machine (62: x86-64)"),
        F("page_size", "uint32_t"),
        F("header_size", "uint32_t", doc="64"),
        F("flags", "uint32_t", doc="0 (reserved)"),
        F("pid", "uint32_t", doc="the process's pid when captured"),
        F("created_ns", "uint64_t", doc="CLOCK_REALTIME at capture"),
        F("reserved", "uint64_t", 2),
        F("head_hash", "uint64_t", doc="mxh64 of the 56 bytes before it"),
    ),
)

RECORD_HEADER = Struct(
    "record_header",
    "Before every record's payload.",
    (
        F("kind", "uint16_t", doc="Kind"),
        F("flags", "uint16_t", doc="0 (reserved for compression)"),
        F("seq", "uint32_t", doc="0 for the first record, then +1"),
        F("length", "uint64_t", doc="payload bytes that follow"),
        F("payload_hash", "uint64_t", doc="mxh64 of the payload"),
        F("head_hash", "uint64_t", doc="mxh64 of the 24 bytes before it"),
    ),
)

PROCESS = Struct(
    "process",
    "Kind.PROCESS: identity, memory layout, and the kernel state the restorer sets.",
    (
        F("pid", "uint32_t"),
        F("ppid", "uint32_t"),
        F("uid", "uint32_t", doc="real uid"),
        F("gid", "uint32_t", doc="real gid"),
        F("umask", "uint32_t"),
        F("personality", "uint32_t"),
        F("base_mode", "uint32_t", doc="the base filter's mode (0 -u, 1 -e, 2 -w)"),
        F("shim_kind", "uint32_t", doc="ShimKind of the filter the shim had installed"),
        F("shim_mode", "uint32_t", doc="the shim's mode"),
        F("xsave_size", "uint32_t", doc="bytes of the XSTATE record"),
        F("shim_lo", "uint64_t", doc="libc text the shim's filter covers: [lo, hi)"),
        F("shim_hi", "uint64_t"),
        F("comm", "char", 16, doc="the process name (NUL-padded)"),
        F("xfeatures", "uint64_t", doc="XCR0 of the capturing CPU"),
        F("cpuid_1_ecx", "uint32_t", doc="CPUID feature words of the capturing CPU"),
        F("cpuid_1_edx", "uint32_t"),
        F("cpuid_7_ebx", "uint32_t"),
        F("cpuid_7_ecx", "uint32_t"),
        F("cpuid_7_edx", "uint32_t"),
        F("rseq_len", "uint32_t", doc="0: no rseq registered"),
        F("rseq_addr", "uint64_t"),
        F("rseq_flags", "uint32_t"),
        F("rseq_sig", "uint32_t"),
        F("robust_list", "uint64_t", doc="head registered with set_robust_list (0: none)"),
        F("robust_len", "uint64_t"),
        F("tid_addr", "uint64_t", doc="libc's copy of the thread id (set_tid_address); 0: unknown"),
        F("start_code", "uint64_t", doc="mm fields for PR_SET_MM_MAP (/proc/PID/stat)"),
        F("end_code", "uint64_t"),
        F("start_data", "uint64_t"),
        F("end_data", "uint64_t"),
        F("start_brk", "uint64_t"),
        F("brk", "uint64_t"),
        F("start_stack", "uint64_t"),
        F("arg_start", "uint64_t"),
        F("arg_end", "uint64_t"),
        F("env_start", "uint64_t"),
        F("env_end", "uint64_t"),
        F("auxv_words", "uint32_t", doc="used words of auxv (pairs, ending AT_NULL)"),
        F("pad0", "uint32_t"),
        F("auxv", "uint64_t", 96),
        F("rlimits", "uint64_t", 32, doc="16 x (soft, hard), RLIMIT_CPU..RLIMIT_RTTIME"),
        F("itimers", "int64_t", 12, doc="ITIMER_REAL/VIRTUAL/PROF: interval s, us, value s, us"),
        F("altstack_sp", "uint64_t", doc="sigaltstack"),
        F("altstack_size", "uint64_t"),
        F("altstack_flags", "int32_t"),
        F("pad1", "uint32_t"),
        F("sigmask", "uint64_t", doc="blocked signals (bit n-1 = signal n)"),
        F("vdso", "uint64_t", 2, doc="[start, end) of [vdso]"),
        F("vvar", "uint64_t", 2, doc="[start, end) of [vvar]"),
        F("vvar_vclock", "uint64_t", 2, doc="[start, end) of [vvar_vclock] (0, 0 if none)"),
        F("exe", "char", 256, doc="/proc/PID/exe, for mosrun -I (truncated)"),
        F(
            "vdso_hash",
            "uint64_t",
            doc="mxh64 of the [vdso] area's bytes (0: not recorded): the restorer refuses "
            "another kernel's vdso, whose code the program's libc has pointers into",
        ),
        F("threads", "uint32_t", doc="threads, the main one included (THREAD records + 1)"),
        F(
            "tcb_tid_offset",
            "uint32_t",
            doc="where glibc keeps each thread's id, from its fs_base (struct pthread's tid: "
            "found as the offset at which every thread's control block holds its own id, "
            "or in a recovered process the id its thread id map names); 0: not found",
        ),
    ),
)

REG_NAMES = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx"),
    *("rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base"),
    *("gs_base", "ds", "es", "fs", "gs"),
)
REGS = Struct(
    "regs",
    "Kind.REGS: struct user_regs_struct (x86-64), as ptrace gives it.  A call that was "
    "interrupted is recorded to be issued again (rip on the syscall instruction, rax "
    "its number).",
    tuple(F(n, "uint64_t") for n in REG_NAMES),
)

THREAD = Struct(
    "thread",
    "Kind.THREAD: a thread other than the main one; ``PROCESS.xsave_size`` bytes of its XSAVE "
    "area (standard layout) follow.",
    (
        F("tid", "uint32_t", doc="its thread id when captured"),
        F("flags", "uint32_t", doc="0 (reserved)"),
        F("regs", "uint64_t", len(REG_NAMES), doc="struct regs, as in Kind.REGS"),
        F("sigmask", "uint64_t", doc="blocked signals"),
        F("altstack_sp", "uint64_t", doc="sigaltstack"),
        F("altstack_size", "uint64_t"),
        F("altstack_flags", "int32_t"),
        F("rseq_len", "uint32_t", doc="0: no rseq registered"),
        F("rseq_addr", "uint64_t"),
        F("rseq_flags", "uint32_t"),
        F("rseq_sig", "uint32_t"),
        F("robust_list", "uint64_t", doc="set_robust_list head (0: none)"),
        F("robust_len", "uint64_t"),
        F(
            "tid_addr",
            "uint64_t",
            doc="fs_base + tcb_tid_offset: glibc's copy of its id, which keeps its value when "
            "the restorer translates thread ids (a program with the shim's handler), else "
            "where the restorer's clone writes the new one (0: unknown)",
        ),
        F(
            "clear_tid",
            "uint64_t",
            doc="its clear-child-tid address (PR_GET_TID_ADDRESS; where the kernel writes 0 "
            "when it ends: pthread_join waits on it); 0: none",
        ),
    ),
)

SIGNAL = Struct(
    "signal",
    "Kind.SIGNAL: a signal pending when captured, queued again on recovery.",
    (
        F("tid", "uint32_t", doc="the thread it is pending for (its captured id); 0: the process"),
        F("pad", "uint32_t"),
        F("info", "char", SIGINFO_SIZE, doc="its siginfo_t (si_signo first)"),
    ),
)

TIMER = Struct(
    "timer",
    "Kind.TIMER: a POSIX timer (/proc/PID/timers, and timer_gettime when captured), made "
    "again with its id and armed with its remaining time.",
    (
        F("id", "int32_t", doc="its timer_t"),
        F("clockid", "int32_t"),
        F("signo", "int32_t", doc="sigev_signo"),
        F("notify", "int32_t", doc="sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD_ID 4"),
        F("tid", "uint32_t", doc="SIGEV_THREAD_ID: the thread (its captured id)"),
        F("pad", "uint32_t"),
        F("value", "uint64_t", doc="sigev_value"),
        F("interval", "int64_t", 2, doc="it_interval: seconds, nanoseconds"),
        F("remaining", "int64_t", 2, doc="it_value when captured (0, 0: disarmed)"),
    ),
)

SIGACTION = Struct(
    "sigaction",
    "One of the 64 entries of Kind.SIGACTIONS (the kernel's struct sigaction).",
    (
        F("handler", "uint64_t", doc="SIG_DFL 0, SIG_IGN 1, or an address"),
        F("flags", "uint64_t"),
        F("restorer", "uint64_t"),
        F("mask", "uint64_t"),
    ),
)

FILE = Struct(
    "file",
    "Kind.FILE: one open descriptor; ``path_len`` bytes of path follow.",
    (
        F("fd", "int32_t"),
        F("kind", "uint32_t", doc="FileKind"),
        F("flags", "uint32_t", doc="open flags (O_ACCMODE, O_APPEND, ...; /proc fdinfo)"),
        F("cloexec", "uint32_t", doc="1 if FD_CLOEXEC"),
        F("mode", "uint32_t", doc="st_mode"),
        F("path_len", "uint32_t"),
        F("offset", "int64_t", doc="file position"),
        F("size", "int64_t", doc="st_size at the frozen point, with offset"),
        F("dev", "uint64_t"),
        F("ino", "uint64_t"),
    ),
)

FILEDATA = Struct(
    "filedata",
    "Kind.FILEDATA: ``length - 16`` bytes of an unlinked file's contents at ``offset``.",
    (
        F("fd", "int32_t", doc="the FILE record (kind UNLINKED) this belongs to"),
        F("pad", "uint32_t"),
        F("offset", "uint64_t"),
    ),
)

PRIVATE = Struct(
    "private",
    "Kind.PRIVATE: a private temporary directory (mosrun -X) or one of its files; ``path_len``"
    " bytes of path follow (a directory's absolute path, or a file's name in the last"
    " directory), then a file's ``size`` bytes of contents: at most 4 MiB"
    " (PRIVATE_PART_BYTES) in its FILE record, the rest in MORE records of the same name"
    " and mode that follow it, appended in order.",
    (
        F("kind", "uint32_t", doc="PrivateKind"),
        F("mode", "uint32_t", doc="st_mode"),
        F("path_len", "uint32_t"),
        F("pad", "uint32_t"),
        F("size", "uint64_t", doc="bytes of contents (0 for a directory)"),
    ),
)

AREA = Struct(
    "area",
    "Kind.AREA: one memory area; ``name_len`` bytes of name follow (path or [heap]...).",
    (
        F("start", "uint64_t"),
        F("end", "uint64_t"),
        F("pgoff", "uint64_t", doc="file offset of a file mapping"),
        F("dev", "uint64_t"),
        F("ino", "uint64_t"),
        F("prot", "uint32_t", doc="PROT_READ 1 | PROT_WRITE 2 | PROT_EXEC 4"),
        F("flags", "uint32_t", doc="AreaFlag"),
        F("name_len", "uint32_t"),
        F("mapfile", "uint32_t", doc="REFERENCE: index of its MAPFILE record (0, 1, ...); else 0"),
    ),
)

MAPFILE = Struct(
    "mapfile",
    "Kind.MAPFILE: a file that REFERENCE areas map; ``path_len`` bytes of path follow.  Written "
    "only into a checkpoint file meant for recovery where it was taken (never a move's "
    "stream).  The restorer refuses the image, naming the file, unless the file at the path "
    "has this identity (before anything is changed) and the pages it maps from it hash to "
    "``hash``.",
    (
        F("dev", "uint64_t", doc="st_dev (the same as the mapping's, in /proc/PID/maps)"),
        F("ino", "uint64_t"),
        F("size", "uint64_t", doc="st_size: pages past its end are not referenced"),
        F("mtime_ns", "uint64_t", doc="st_mtime in nanoseconds"),
        F(
            "hash",
            "uint64_t",
            doc="mxh64 of every referenced page (the pages of its REFERENCE areas that no PAGES "
            "record stores, below the file's end), in address order",
        ),
        F("path_len", "uint32_t"),
        F("pad", "uint32_t"),
    ),
)

PAGES = Struct(
    "pages",
    "Kind.PAGES: ``npages`` pages at ``addr``, inside the last AREA; pages not stored are zero "
    "(the file's, in a REFERENCE area).",
    (
        F("addr", "uint64_t"),
        F("npages", "uint64_t"),
    ),
)

END = Struct(
    "end",
    "Kind.END: the last record.",
    (
        F("records", "uint32_t", doc="records before this one"),
        F("areas", "uint32_t"),
        F("pages", "uint64_t", doc="pages stored"),
    ),
)

STRUCTS = (
    *(FILE_HEADER, RECORD_HEADER, PROCESS, REGS, THREAD, SIGNAL, TIMER, SIGACTION, FILE),
    FILEDATA,
    PRIVATE,
    *(MAPFILE, AREA, PAGES, END),
)

for _s in STRUCTS:
    _s.offsets()
assert FILE_HEADER.size == 64 and RECORD_HEADER.size == 32

# OPTIONS keys (text record, one KEY=VALUE per line, values without newlines).
OPTION_KEYS = (
    "inherit",  # the process's MOSIX_INHERIT words (program options recovered from the image)
    "checkpoint-file",  # -C as given (before numbering)
    "checkpoint-next",  # number of the next checkpoint
    "checkpoint-limit",  # -N (0: unlimited)
    "checkpoint-interval",  # -A minutes (0: none)
    "argv0",  # for messages
)
