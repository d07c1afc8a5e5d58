"""The image format's one definition: generated C header and doc, checksum, struct layouts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.cbuild import build_c

from mosix.ckpt import format as fmt
from mosix.native.checksum import mxh64

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """sizeof/offsetof of every struct and field as the C compiler lays them out."""
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        '#include "ckpt_format.h"',
        "int main(void){",
    ]
    for s in fmt.STRUCTS:
        t = f"struct mosix_ckpt_{s.name}"
        lines.append(f'printf("{s.name} %zu\\n", sizeof({t}));')
        for f in s.fields:
            lines.append(f'printf("{s.name}.{f.name} %zu\\n", offsetof({t}, {f.name}));')
    lines.append("return 0;}")
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text("\n".join(lines))
    build_c(
        d / "layout.c", d / "layout", "-Wall", "-Werror", "-I", str(REPO / "csrc" / "generated")
    )
    out = subprocess.run([str(d / "layout")], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("s", fmt.STRUCTS, ids=lambda s: s.name)
def test_c_and_python_agree_on_every_field(s: fmt.Struct, c_layout: dict[str, int]) -> None:
    assert c_layout[s.name] == s.size
    for name, offset in s.offsets().items():
        assert c_layout[f"{s.name}.{name}"] == offset, name


def test_pack_and_unpack_round_trip() -> None:
    raw = fmt.AREA.pack(start=0x1000, end=0x3000, prot=5, flags=int(fmt.AreaFlag.FILE), name_len=7)
    assert len(raw) == fmt.AREA.size
    back = fmt.AREA.unpack(raw)
    assert (back["start"], back["end"], back["prot"], back["name_len"]) == (0x1000, 0x3000, 5, 7)


# ----------------------------------------------------------------- mxh64

HASH_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ckpt_hash.h"
/* stdin: seed, then the bytes; stdout: the hash in one go and fed in pieces of 1..97 bytes */
int main(int argc, char **argv) {
    (void)argc;
    unsigned long long seed = strtoull(argv[1], 0, 0);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, stdin);
    struct mxh64 h; mxh_init(&h, seed);
    size_t at = 0, step = 1;
    while (at < n) {
        size_t k = step < n - at ? step : n - at;
        mxh_update(&h, buf + at, k);
        at += k;
        step = step % 97 + 1;
    }
    unsigned long long whole = mxh64(buf, n, seed), pieces = mxh_final(&h);
    printf("%llx %llx\n", whole, pieces);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_hash(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hash")
    (d / "hash.c").write_text(HASH_PROGRAM)
    flags = ("-O2", "-Wall", "-Werror", "-I", str(REPO / "csrc" / "common"))
    return build_c(d / "hash.c", d / "hash", *flags)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), seed=st.integers(0, 2**64 - 1))
def test_c_and_the_binding_checksums_agree(c_hash: Path, data: bytes, seed: int) -> None:
    out = subprocess.run(
        [str(c_hash), str(seed)], input=data, capture_output=True, check=True, timeout=30
    ).stdout.split()
    whole, pieces = (int(x, 16) for x in out)
    assert whole == pieces == mxh64(data, seed)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=300), at=st.integers(0, 299), bit=st.integers(0, 7))
def test_any_flipped_bit_changes_the_checksum(data: bytes, at: int, bit: int) -> None:
    at %= len(data)
    damaged = bytearray(data)
    damaged[at] ^= 1 << bit
    assert mxh64(bytes(damaged)) != mxh64(data)


def test_length_matters_even_for_zero_bytes() -> None:
    assert len({mxh64(bytes(n)) for n in range(70)}) == 70
