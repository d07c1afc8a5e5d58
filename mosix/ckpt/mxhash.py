"""mxh64: the image checksum (csrc/common/ckpt_hash.h is the same function in C).

Four 64-bit lanes take 8-byte little-endian words in turn; each step is
``lane = rotl(lane ^ word, 27) * P1``, a bijection of the word, so any change
of one word changes its lane.  A tail shorter than a word is zero-padded and
the length is mixed into the result, which a final avalanche spreads over
all 64 bits.  It detects corruption; it is not a cryptographic hash.  The C
version runs at several GB/s, so verifying pages costs little next to reading
them; this one is for the small records Python reads.
"""

from __future__ import annotations

import struct

MASK = (1 << 64) - 1
P1 = 0x9FB21C651E98DF25
P2 = 0xC2B2AE3D27D4EB4F
P3 = 0x165667B19E3779F9
LANES = (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK


def _avalanche(x: int) -> int:
    x ^= x >> 33
    x = (x * P2) & MASK
    x ^= x >> 29
    x = (x * P3) & MASK
    x ^= x >> 32
    return x


def mxh64(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    view = memoryview(data).cast("B")
    n = len(view)
    v = [(lane ^ seed) & MASK for lane in LANES]
    full = n - n % 32
    for a, b, c, d in struct.iter_unpack("<4Q", view[:full]):
        v[0] = (_rotl(v[0] ^ a, 27) * P1) & MASK
        v[1] = (_rotl(v[1] ^ b, 27) * P1) & MASK
        v[2] = (_rotl(v[2] ^ c, 27) * P1) & MASK
        v[3] = (_rotl(v[3] ^ d, 27) * P1) & MASK
    tail = bytes(view[full:])
    if tail:
        tail += bytes(-len(tail) % 8)
        for i, (w,) in enumerate(struct.iter_unpack("<Q", tail)):
            v[i] = (_rotl(v[i] ^ w, 27) * P1) & MASK
    h = ((n * P2) ^ seed) & MASK
    for lane in v:
        h = (_rotl(h ^ _avalanche(lane), 23) * P1 + P3) & MASK
    return _avalanche(h)
