"""An image's file header and record headers, read and checked by C (csrc/common/image_check.h).

The checks are made in C on the generated format's structs (csrc/generated/ckpt_format.h),
the same structs the capturer writes and the restorer reads; each refusal comes back as a
:class:`Verdict`, which mosix.ckpt.image words for the user.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mosix.native.compiled import binding

FILE_HEADER_SIZE = 64
RECORD_HEADER_SIZE = 32


class Verdict(enum.Enum):
    """Why a header was refused (enum mosix_image_verdict)."""

    NOT_IMAGE = "NOT_IMAGE"  # no magic
    TRUNCATED = "TRUNCATED"  # fewer bytes than a header
    DAMAGED = "DAMAGED"  # the header's checksum
    VERSION = "VERSION"  # another format version
    ARCH = "ARCH"  # another architecture
    GEOMETRY = "GEOMETRY"  # another page size or header size
    SEQ = "SEQ"  # a record out of order
    KIND = "KIND"  # a record of no known kind
    LENGTH = "LENGTH"  # a record longer than any the capturer writes


@dataclass(frozen=True)
class FileHeader:
    version: int
    arch: int
    pid: int
    created_ns: int


@dataclass(frozen=True)
class RecordHeader:
    kind: int
    seq: int
    length: int
    payload_hash: int


class HeaderRefused(Exception):
    """A header that fails a check: ``verdict`` says which; ``header`` holds its
    fields when the check was about one of them (version, arch, seq, kind, length)."""

    def __init__(self, verdict: Verdict, header: FileHeader | RecordHeader | None) -> None:
        super().__init__(verdict.name)
        self.verdict = verdict
        self.header = header


def _verdict(lib: object, code: int) -> Verdict:
    for v in Verdict:
        if getattr(lib, f"MOSIX_IMAGE_{v.value}") == code:
            return v
    raise AssertionError(f"image_check.h: verdict {code} unknown to Python")


def file_header(raw: bytes) -> FileHeader:
    """The file header in ``raw`` (its first bytes up to the header's size), checked."""
    ffi, lib = binding()
    out = ffi.new("struct mosix_ckpt_file_header *")
    code = lib.mosix_image_file_header(raw, len(raw), out)
    head = FileHeader(int(out.version), int(out.arch), int(out.pid), int(out.created_ns))
    if code != lib.MOSIX_IMAGE_OK:
        raise HeaderRefused(_verdict(lib, code), head if code > lib.MOSIX_IMAGE_DAMAGED else None)
    return head


def record_header(raw: bytes, seq: int) -> RecordHeader:
    """Record ``seq``'s header in ``raw``, checked."""
    ffi, lib = binding()
    out = ffi.new("struct mosix_ckpt_record_header *")
    code = lib.mosix_image_record_header(raw, len(raw), seq, out)
    head = RecordHeader(int(out.kind), int(out.seq), int(out.length), int(out.payload_hash))
    if code != lib.MOSIX_IMAGE_OK:
        raise HeaderRefused(_verdict(lib, code), head if code > lib.MOSIX_IMAGE_DAMAGED else None)
    return head
