"""mxh64, the image checksum: the C function (csrc/common/ckpt_hash.h) the helpers use."""

from __future__ import annotations

from mosix.native.compiled import binding


def mxh64(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """The checksum of ``data``'s bytes (any buffer: bytes, bytearray, memoryview)."""
    ffi, lib = binding()
    view = memoryview(data).cast("B")
    return int(lib.mxh64(ffi.from_buffer(view), len(view), seed))
