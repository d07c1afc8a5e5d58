"""Read the part of a checkpoint image that comes before its memory.

``mosrun -I`` lists the open files from it and ``mosrun -R`` reopens them,
recreates unlinked files and finds the settings to recover with.  Everything
read is checked (checksums, order, lengths, limits) so a damaged or hostile
file gives an :class:`ImageError` with a one-line reason, never a traceback.
Memory is left to the restorer (csrc/restore/mosix_restore.c), which checks the rest.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from mosix.ckpt import format as fmt
from mosix.native.checksum import mxh64
from mosix.native.image_header import (
    FileHeader,
    HeaderRefused,
    RecordHeader,
    Verdict,
    file_header,
    record_header,
)


class ImageError(Exception):
    """The file is not a usable checkpoint image; str() is the one-line reason."""


@dataclass(frozen=True)
class OpenFile:
    fd: int
    kind: fmt.FileKind
    flags: int
    cloexec: bool
    mode: int
    offset: int
    size: int
    path: str


@dataclass(frozen=True)
class PrivateFile:
    """A file of a private temporary directory (mosrun -X) and its contents."""

    directory: int  # index in ImageHead.private_dirs
    name: str
    mode: int
    data: bytes


@dataclass
class ImageHead:
    """What precedes the memory records."""

    pid: int
    created_ns: int
    process: dict[str, object]
    options: dict[str, str]
    cwd: str
    files: list[OpenFile] = field(default_factory=list)
    # (fd, offset, bytes) pieces of unlinked files, in order
    file_data: list[tuple[int, int, bytes]] = field(default_factory=list)
    # mosrun -X: the private directories, and their files
    private_dirs: list[str] = field(default_factory=list)
    private_files: list[PrivateFile] = field(default_factory=list)

    @property
    def comm(self) -> str:
        raw = self.process["comm"]
        assert isinstance(raw, bytes)
        return raw.split(b"\0", 1)[0].decode(errors="replace")

    def unlinked_pieces(self, fd: int) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of the saved contents of unlinked file ``fd``, in order."""
        for piece_fd, offset, data in self.file_data:
            if piece_fd == fd:
                yield offset, data


class _Reader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.seq = 0

    def exact(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise ImageError(f"truncated image (in {what})")
        return data

    def record(self) -> tuple[fmt.Kind, bytes]:
        raw = self.exact(fmt.RECORD_HEADER.size, f"record {self.seq}")
        try:
            h = record_header(raw, self.seq)
        except HeaderRefused as e:
            raise ImageError(f"corrupted image ({self.refused(e)})") from None
        payload = self.exact(h.length, f"record {self.seq}")
        if mxh64(payload) != h.payload_hash:
            raise ImageError(f"corrupted image (record {self.seq}: checksum mismatch)")
        self.seq += 1
        return fmt.Kind(h.kind), payload

    def refused(self, e: HeaderRefused) -> str:
        h = e.header
        if e.verdict is Verdict.SEQ and isinstance(h, RecordHeader):
            return f"record {self.seq} is numbered {h.seq}"
        if e.verdict is Verdict.KIND and isinstance(h, RecordHeader):
            return f"record {self.seq}: unknown kind {h.kind}"
        if e.verdict is Verdict.LENGTH and isinstance(h, RecordHeader):
            return f"record {self.seq}: {h.length} bytes"
        return f"record {self.seq}: damaged header"


def _fixed(s: fmt.Struct, payload: bytes, kind: fmt.Kind, exact: bool = True) -> dict[str, object]:
    if len(payload) < s.size or (exact and len(payload) != s.size):
        raise ImageError(f"corrupted image ({kind.name} record of {len(payload)} bytes)")
    return s.unpack(payload)


def _text(payload: bytes) -> str:
    return payload.decode(errors="surrogateescape")


def _options(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _text(payload).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _file(payload: bytes) -> OpenFile:
    f = _fixed(fmt.FILE, payload, fmt.Kind.FILE, exact=False)
    path_len, fd, kind = f["path_len"], f["fd"], f["kind"]
    assert isinstance(path_len, int) and isinstance(fd, int) and isinstance(kind, int)
    if path_len > fmt.MAX_PATH or fmt.FILE.size + path_len != len(payload):
        raise ImageError("corrupted image (FILE record's path length)")
    if not 0 <= fd < fmt.MAX_FILES:
        raise ImageError(f"corrupted image (descriptor {fd})")
    try:
        file_kind = fmt.FileKind(kind)
    except ValueError:
        raise ImageError(f"corrupted image (descriptor {fd} of unknown kind {kind})") from None
    path = payload[fmt.FILE.size :].decode(errors="surrogateescape")
    return OpenFile(
        fd=fd,
        kind=file_kind,
        flags=int(f["flags"]),  # type: ignore[call-overload]
        cloexec=bool(f["cloexec"]),
        mode=int(f["mode"]),  # type: ignore[call-overload]
        offset=int(f["offset"]),  # type: ignore[call-overload]
        size=int(f["size"]),  # type: ignore[call-overload]
        path=path,
    )


def failed_message(first: bytes) -> str | None:
    """The reason of a checkpoint that failed when it was taken (the file holds just it)."""
    if not first.startswith(fmt.FAILED_PREFIX):
        return None
    line = first.split(b"\n", 1)[0]
    return line[len(fmt.FAILED_PREFIX) :].decode(errors="replace")


def read_head(stream: BinaryIO) -> ImageHead:
    """Read and check the file header and every record before the first memory area."""
    raw = stream.read(fmt.FILE_HEADER.size)
    failed = failed_message(raw + stream.read(512)) if raw.startswith(fmt.FAILED_PREFIX) else None
    if failed is not None:
        raise ImageError(f"the checkpoint failed when it was taken: {failed}")
    try:
        head = file_header(raw)
    except HeaderRefused as e:
        raise ImageError(_file_header_reason(e)) from None
    return _records(_Reader(stream), head)


def _file_header_reason(e: HeaderRefused) -> str:
    h = e.header
    if e.verdict is Verdict.NOT_IMAGE:
        return "not a checkpoint image"
    if e.verdict is Verdict.TRUNCATED:
        return "truncated image (in the file header)"
    if e.verdict is Verdict.VERSION and isinstance(h, FileHeader):
        return (
            f"image version {h.version}, this mosrun reads versions "
            f"{fmt.OLDEST_VERSION} to {fmt.VERSION}"
        )
    if e.verdict is Verdict.ARCH and isinstance(h, FileHeader):
        return f"image from another architecture (ELF machine {h.arch})"
    if e.verdict is Verdict.GEOMETRY:
        return "image with another page size or header size"
    return "corrupted image (damaged file header)"


def _records(r: _Reader, head: FileHeader) -> ImageHead:
    kind, payload = r.record()
    if kind is not fmt.Kind.PROCESS:
        raise ImageError(f"corrupted image (first record is {kind.name})")
    process = _fixed(fmt.PROCESS, payload, kind)
    kind, payload = r.record()
    if kind is not fmt.Kind.OPTIONS:
        raise ImageError(f"corrupted image ({kind.name} where OPTIONS belongs)")
    options = _options(payload)
    kind, payload = r.record()
    if kind is not fmt.Kind.CWD or len(payload) > fmt.MAX_PATH:
        raise ImageError(f"corrupted image ({kind.name} where CWD belongs)")
    out = ImageHead(
        pid=head.pid,
        created_ns=head.created_ns,
        process=process,
        options=options,
        cwd=_text(payload),
    )
    fds: set[int] = set()
    kind, payload = r.record()
    while kind is fmt.Kind.FILE:
        f = _file(payload)
        if f.fd in fds:
            raise ImageError(f"corrupted image (descriptor {f.fd} twice)")
        fds.add(f.fd)
        out.files.append(f)
        kind, payload = r.record()
    unlinked = {f.fd for f in out.files if f.kind is fmt.FileKind.UNLINKED}
    while kind is fmt.Kind.FILEDATA:
        d = _fixed(fmt.FILEDATA, payload, kind, exact=False)
        fd, offset = d["fd"], d["offset"]
        assert isinstance(fd, int) and isinstance(offset, int)
        if fd not in unlinked:
            raise ImageError(f"corrupted image (contents for descriptor {fd})")
        out.file_data.append((fd, offset, payload[fmt.FILEDATA.size :]))
        kind, payload = r.record()
    while kind is fmt.Kind.PRIVATE:
        _private(payload, out)
        kind, payload = r.record()
    if kind is not fmt.Kind.REGS:
        raise ImageError(f"corrupted image ({kind.name} where REGS belongs)")
    return out


def _private(payload: bytes, out: ImageHead) -> None:
    """One PRIVATE record: a directory (the -X rules hold) or a regular file's
    name (one component) and contents in the last one."""
    from mosix.arguments import UsageError, check_private_dir

    rec = _fixed(fmt.PRIVATE, payload, fmt.Kind.PRIVATE, exact=False)
    kind, mode, path_len, size = rec["kind"], rec["mode"], rec["path_len"], rec["size"]
    assert isinstance(kind, int) and isinstance(mode, int)
    assert isinstance(path_len, int) and isinstance(size, int)
    rest = payload[fmt.PRIVATE.size :]
    if path_len > fmt.MAX_PATH or len(rest) != path_len + size:
        raise ImageError("corrupted image (a private file's length)")
    path = _text(rest[:path_len])
    if kind == fmt.PrivateKind.DIRECTORY and size == 0:
        try:
            directory = check_private_dir("-X", path)
        except UsageError:
            directory = ""
        if directory != path or path in out.private_dirs:
            raise ImageError("corrupted image (a private directory)")
        out.private_dirs.append(path)
    elif kind == fmt.PrivateKind.FILE and out.private_dirs:
        if path in ("", ".", "..") or "/" in path or "\0" in path or not stat.S_ISREG(mode):
            raise ImageError("corrupted image (a private file)")
        data = rest[path_len:]
        out.private_files.append(PrivateFile(len(out.private_dirs) - 1, path, mode, data))
    elif (
        kind == fmt.PrivateKind.MORE
        and out.private_files
        and out.private_files[-1].directory == len(out.private_dirs) - 1
        and out.private_files[-1].name == path
        and mode == out.private_files[-1].mode
    ):
        last = out.private_files[-1]
        out.private_files[-1] = replace(last, data=last.data + rest[path_len:])
    else:
        raise ImageError("corrupted image (a private record)")


def read_head_from(path: str) -> ImageHead:
    """read_head of the file at ``path``; OSError becomes ImageError."""
    try:
        with open(path, "rb") as f:
            return read_head(f)
    except OSError as e:
        raise ImageError(e.strerror or str(e)) from None


def describe_flags(flags: int) -> str:
    """Open flags as words: O_RDONLY|O_APPEND..."""
    access = {os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}
    words = [access.get(flags & os.O_ACCMODE, f"access {flags & os.O_ACCMODE}")]
    for name in ("O_APPEND", "O_NONBLOCK", "O_SYNC", "O_DSYNC", "O_DIRECT", "O_NOATIME"):
        bit = getattr(os, name, 0)
        if bit and flags & bit:
            words.append(name)
    return "|".join(words)
