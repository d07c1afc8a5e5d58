"""Fuzzing the restorer's validator: ``mosix-restore -c`` on mutated synthetic images.

Whatever the bytes, the restorer exits 0 (a good image) or 125 with exactly one line on
stderr; it never dies of a signal, hangs, or prints more.  Mutations: bit flips,
truncations, splices of whole records (re-numbered, so the order checks are reached),
and random values in the structs' fields with every checksum recomputed, so the
validator itself is exercised, not just the checksums.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import ckpt_images as ci
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosix.ckpt import format as F

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 restorer")

REFUSED = 125
EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Records = list[tuple[int, bytes]]

_build = Path(tempfile.mkdtemp(prefix="restore-fuzz-"))
atexit.register(shutil.rmtree, _build, ignore_errors=True)
_base: dict[str, Records] = {}


def base_records() -> Records:
    """The tiny image's records (built once: gcc runs for the host's CPU facts)."""
    if "tiny" not in _base:
        if not ci.RESTORER.exists():
            pytest.fail(f"{ci.RESTORER} is missing (python setup.py build_native)")
        _base["tiny"] = ci.tiny_image(ci.host_facts(_build)).records()
    return list(_base["tiny"])


def check(data: bytes) -> subprocess.CompletedProcess[bytes]:
    fd, name = tempfile.mkstemp(dir=_build)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        return subprocess.run(
            [str(ci.RESTORER), "-c", str(fd)],
            pass_fds=(fd,),
            capture_output=True,
            timeout=30,
        )
    finally:
        os.close(fd)
        os.unlink(name)


def assert_clean(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode in (0, REFUSED), (result.returncode, result.stderr)
    assert result.stdout == b""
    if result.returncode == 0:
        assert result.stderr == b""
    else:
        lines = result.stderr.splitlines(keepends=True)
        assert len(lines) == 1 and lines[0].endswith(b"\n"), result.stderr
        assert lines[0].startswith(b"mosix-restore: "), result.stderr


def test_base_image_is_good() -> None:
    result = check(ci.encode_records(base_records()))
    assert (result.returncode, result.stderr) == (0, b"")


# ------------------------------------------------------------------ byte-level


@FUZZ
@given(st.data())
def test_bit_flips(data: st.DataObject) -> None:
    raw = bytearray(ci.encode_records(base_records()))
    for bit in data.draw(
        st.lists(st.integers(0, len(raw) * 8 - 1), min_size=1, max_size=3, unique=True)
    ):
        raw[bit // 8] ^= 1 << (bit % 8)
    result = check(bytes(raw))
    assert_clean(result)
    assert result.returncode == REFUSED


@FUZZ
@given(st.data())
def test_truncations_and_garbage(data: st.DataObject) -> None:
    raw = ci.encode_records(base_records())
    cut = data.draw(st.integers(0, len(raw)))
    tail = data.draw(st.binary(max_size=64))
    mutated = raw[:cut] + tail
    result = check(mutated)
    assert_clean(result)
    if mutated != raw:
        assert result.returncode == REFUSED


# ------------------------------------------------------------------ record-level

KINDS = st.sampled_from(list(F.Kind))


@FUZZ
@given(st.data())
def test_record_splices(data: st.DataObject) -> None:
    """Records deleted, duplicated, moved, or foreign ones inserted; numbered anew."""
    records = base_records()
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["delete", "duplicate", "move", "insert", "kind"]))
        i = data.draw(st.integers(0, len(records) - 1))
        if op == "delete" and len(records) > 1:
            del records[i]
        elif op == "duplicate":
            records.insert(data.draw(st.integers(0, len(records))), records[i])
        elif op == "move":
            rec = records.pop(i)
            records.insert(data.draw(st.integers(0, len(records))), rec)
        elif op == "insert":
            rec = (data.draw(KINDS), data.draw(st.binary(max_size=200)))
            records.insert(data.draw(st.integers(0, len(records))), rec)
        else:
            records[i] = (data.draw(st.integers(0, 20)), records[i][1])
    assert_clean(check(ci.encode_records(records)))


# ------------------------------------------------------------------ field-level

STRUCT_OF = {
    F.Kind.PROCESS: F.PROCESS,
    F.Kind.REGS: F.REGS,
    F.Kind.AREA: F.AREA,
    F.Kind.PAGES: F.PAGES,
    F.Kind.END: F.END,
    F.Kind.SIGACTIONS: F.SIGACTION,
}

INTERESTING = [
    0,
    1,
    2,
    0x7,
    0x20,
    24,
    ci.PAGE - 1,
    ci.PAGE,
    ci.PAGE + 1,
    0x1F80,
    0xFFFF,
    0xFFFFFFFF,
    F.USER_LOW,
    F.USER_HIGH - ci.PAGE,
    F.USER_HIGH,
    F.TRAMPOLINE,
    F.RESTORER_BASE,
    F.RESTORER_BASE + F.RESTORER_SPAN,
    ci.CODE,
    ci.STACK_LO,
    ci.STACK_HI,
    0xFFFF800000000000,
    (1 << 63) - 1,
    (1 << 64) - 1,
]


def field_value(data: st.DataObject, size: int) -> int:
    value = data.draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, (1 << 64) - 1)))
    return value & ((1 << (size * 8)) - 1)


def mutate_field(data: st.DataObject, payload: bytes, s: F.Struct, base: int = 0) -> bytes:
    """One field of the struct at ``base`` in ``payload`` set to a drawn value."""
    fields = [f for f in s.fields if f.ctype != "char"]
    f = data.draw(st.sampled_from(fields))
    _, size = F.CTYPES[f.ctype]
    offset = base + s.offsets()[f.name] + size * data.draw(st.integers(0, f.count - 1))
    out = bytearray(payload)
    if offset + size > len(out):
        return payload
    out[offset : offset + size] = field_value(data, size).to_bytes(size, "little")
    return bytes(out)


@FUZZ
@given(st.data())
def test_field_values(data: st.DataObject) -> None:
    """Random values in the structs' fields, checksums recomputed: the validator decides."""
    records = base_records()
    for _ in range(data.draw(st.integers(1, 3))):
        candidates = [i for i, (k, _) in enumerate(records) if k in STRUCT_OF]
        i = data.draw(st.sampled_from(candidates))
        kind, payload = records[i]
        s = STRUCT_OF[F.Kind(kind)]
        base = 0
        if kind == F.Kind.SIGACTIONS:
            base = s.size * data.draw(st.integers(0, 63))
        records[i] = (kind, mutate_field(data, payload, s, base))
    assert_clean(check(ci.encode_records(records)))


@FUZZ
@given(st.data())
def test_xstate_and_lengths(data: st.DataObject) -> None:
    """XSAVE header and MXCSR words, and payloads cut or extended behind valid checksums."""
    records = base_records()
    i = next(n for n, (k, _) in enumerate(records) if k == F.Kind.XSTATE)
    x = bytearray(records[i][1])
    for _ in range(data.draw(st.integers(1, 3))):
        offset = data.draw(st.sampled_from([0, 24, 28, 512, 520, 528, 576]))
        struct.pack_into("<I", x, offset, field_value(data, 4))
    records[i] = (F.Kind.XSTATE, bytes(x))
    j = data.draw(st.integers(0, len(records) - 1))
    kind, payload = records[j]
    cut = data.draw(st.integers(0, len(payload) + 16))
    records[j] = (kind, payload[:cut] + bytes(max(0, cut - len(payload))))
    assert_clean(check(ci.encode_records(records)))
