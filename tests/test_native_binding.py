"""The in-process cffi binding (mosix.native.checksum, mosix.native.image_header).

The checksum is the helpers' C function; the header checks run in C on the
generated structs.  Images come from tests/ckpt_images.py (built from the
format's one definition), each check is hit by an image damaged for it.
"""

from __future__ import annotations

import struct

import ckpt_images as ci
import pytest

from mosix.ckpt import format as fmt
from mosix.native.checksum import mxh64
from mosix.native.image_header import (
    FileHeader,
    HeaderRefused,
    Verdict,
    file_header,
    record_header,
)

# Computed by the Python twin this binding replaced (mosix/ckpt/mxhash.py, which the
# binding equalled on hypothesis's data before it was deleted): the C function may not
# drift from the images already written.  test_ckpt_format checks the binding against
# the C compiled alone, fed whole and in pieces.
KNOWN = [
    (b"", 0, 0xD62F854CEB573930),
    (b"a", 0, 0x14B748442BEE12AD),
    (bytes(range(31)), 0, 0xB4E295009BF66BE1),
    (bytes(range(32)), 7, 0x740469D691EC6C41),
    (bytes(range(256)) * 4 + b"xyz", 2**64 - 1, 0x2359331D6A1E947F),
    (b"MOSIXCKP" * 9, 0x1234567890ABCDEF, 0x3EB7CFA287D27F03),
]


@pytest.mark.parametrize(("data", "seed", "expected"), KNOWN)
def test_checksum_equals_the_twins_known_answers(data: bytes, seed: int, expected: int) -> None:
    assert mxh64(data, seed) == expected


def test_checksum_takes_any_buffer() -> None:
    data = bytes(range(256)) * 3
    assert mxh64(bytearray(data)) == mxh64(memoryview(data)) == mxh64(data)
    assert mxh64(memoryview(data)[5:77]) == mxh64(data[5:77])


# ------------------------------------------------------------------ headers


def test_file_header_of_a_good_image() -> None:
    raw = ci.file_header(pid=777)
    assert file_header(raw) == FileHeader(fmt.VERSION, fmt.ARCH_X86_64, 777, 1_700_000_000 * 10**9)


def rehash(raw: bytes) -> bytes:
    """``raw`` with its head_hash made right again (a header that lies well)."""
    return raw[:-8] + struct.pack("<Q", mxh64(raw[:-8]))


@pytest.mark.parametrize(
    ("raw", "verdict"),
    [
        (b"", Verdict.NOT_IMAGE),
        (b"MOSIXCK", Verdict.NOT_IMAGE),
        (b"ELF\0" + bytes(60), Verdict.NOT_IMAGE),
        (ci.file_header()[:40], Verdict.TRUNCATED),
        (ci.file_header() + b"x", Verdict.TRUNCATED),
        (ci.file_header()[:20] + b"\xff" + ci.file_header()[21:], Verdict.DAMAGED),
        (ci.file_header(version=fmt.VERSION + 1), Verdict.VERSION),
        (ci.file_header(arch=183), Verdict.ARCH),
        (ci.file_header(page_size=16384), Verdict.GEOMETRY),
        (ci.file_header(header_size=128), Verdict.GEOMETRY),
    ],
)
def test_file_header_refusals(raw: bytes, verdict: Verdict) -> None:
    with pytest.raises(HeaderRefused) as e:
        file_header(raw)
    assert e.value.verdict is verdict
    if verdict in (Verdict.VERSION, Verdict.ARCH):
        assert isinstance(e.value.header, FileHeader)
        assert (e.value.header.version, e.value.header.arch) != (fmt.VERSION, fmt.ARCH_X86_64)


def test_record_headers_of_an_image() -> None:
    records = [
        (fmt.Kind.PROCESS, b"p" * 10),
        (fmt.Kind.OPTIONS, b"argv0=x\n"),
        (fmt.Kind.CWD, b"/"),
    ]
    data = ci.encode_records(records)
    at = fmt.FILE_HEADER.size
    for seq, (kind, payload) in enumerate(records):
        h = record_header(data[at : at + 32], seq)
        assert (h.kind, h.seq, h.length, h.payload_hash) == (
            kind,
            seq,
            len(payload),
            mxh64(payload),
        )
        at += 32 + h.length
    assert at == len(data)


@pytest.mark.parametrize(
    ("raw", "seq", "verdict"),
    [
        (ci.record_header(fmt.Kind.CWD, 1, 0, 0)[:31], 0, Verdict.TRUNCATED),
        (ci.record_header(fmt.Kind.CWD, 1, 0, 0)[:3] + b"\x01" + bytes(28), 0, Verdict.DAMAGED),
        (ci.record_header(fmt.Kind.CWD, 1, 0, 5), 4, Verdict.SEQ),
        (ci.record_header(0, 1, 0, 0), 0, Verdict.KIND),
        (ci.record_header(fmt.Kind.END + 1, 1, 0, 0), 0, Verdict.KIND),
        (ci.record_header(fmt.Kind.PAGES, fmt.MAX_RECORD_BYTES + 1, 0, 0), 0, Verdict.LENGTH),
    ],
)
def test_record_header_refusals(raw: bytes, seq: int, verdict: Verdict) -> None:
    with pytest.raises(HeaderRefused) as e:
        record_header(raw, seq)
    assert e.value.verdict is verdict
