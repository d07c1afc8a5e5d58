"""The cffi binding's definition (API mode), compiled by setup.py.

setup.py (``build_native`` and the wheel's ``build_py``) calls :func:`build`
into the folder of the other compiled parts: ``mosix/_native/_cnative*.so``,
imported as ``mosix._native._cnative`` by :mod:`mosix.native.compiled` only.
The C it wraps is the helpers' own (csrc/common/ckpt_hash.h, image_check.h),
so Python and C check images with the same code.  Only cffi and the standard
library are imported here: setup.py loads this file before the package exists.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cffi import FFI

MODULE = "mosix._native._cnative"
CSRC = Path(__file__).resolve().parents[2] / "csrc"
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]

CDEF = """
uint64_t mxh64(const void *data, size_t n, uint64_t seed);

struct mosix_ckpt_file_header {
    uint32_t version;
    uint32_t arch;
    uint32_t pid;
    uint64_t created_ns;
    ...;
};
struct mosix_ckpt_record_header {
    uint16_t kind;
    uint32_t seq;
    uint64_t length;
    uint64_t payload_hash;
    ...;
};

enum mosix_image_verdict {
    MOSIX_IMAGE_OK,
    MOSIX_IMAGE_NOT_IMAGE,
    MOSIX_IMAGE_TRUNCATED,
    MOSIX_IMAGE_DAMAGED,
    MOSIX_IMAGE_VERSION,
    MOSIX_IMAGE_ARCH,
    MOSIX_IMAGE_GEOMETRY,
    MOSIX_IMAGE_SEQ,
    MOSIX_IMAGE_KIND,
    MOSIX_IMAGE_LENGTH,
    ...
};

int mosix_image_file_header(const unsigned char *raw, size_t n,
                            struct mosix_ckpt_file_header *out);
int mosix_image_record_header(const unsigned char *raw, size_t n, uint32_t seq,
                              struct mosix_ckpt_record_header *out);
"""


def ffibuilder() -> FFI:
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        MODULE,
        '#include "ckpt_hash.h"\n#include "image_check.h"\n',
        include_dirs=[str(CSRC / "common"), str(CSRC / "generated")],
        extra_compile_args=CFLAGS,
    )
    return ffi


def build(outdir: Path) -> Path:
    """Compile the binding into ``outdir`` (a ``mosix/_native`` folder); its path."""
    with tempfile.TemporaryDirectory(prefix="mosix-cffi-") as tmp:
        built = Path(ffibuilder().compile(tmpdir=tmp, verbose=False))
        target = outdir / built.name
        target.write_bytes(built.read_bytes())
    return target
