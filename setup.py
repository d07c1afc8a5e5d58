"""Build the C parts of the package (preload shim, helper executables).

The C parts are not Python extension modules: they are a shared library that
is LD_PRELOADed into user programs and small executables that run outside
Python.  They are compiled with the system C compiler into ``mosix/_native``
inside the build tree, so a wheel carries them next to the Python code.

``python setup.py build_native`` compiles them into the source tree
(``mosix/_native``) for working from a checkout without installing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
CFLAGS = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]

# The one list of native targets: (output name, kind, sources, extra flags).
# kind "shared": a position-independent shared library (LD_PRELOAD).
# kind "exe": an ordinary executable.
# kind "static": a static executable without libc (the restorer), not PIE.
# The policy table is compiled in through csrc/seccomp_table.h, generated from
# mosix/discipline/policy.py (python -m mosix.discipline.generate; a test checks it).
NATIVE_TARGETS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "libmosix_shim.so",
        "shared",
        [
            "preload_shim.c",
            "shim_checkpoint.c",
            "seccomp_filter.c",
            "shim_forward.c",
            "forward_marshal.c",
            "shim_mem.c",
        ],
        # the fast path (shim_forward.c) marshals in the process: no libc, own mem* (shim_mem.c)
        ["-fvisibility=hidden", "-DFWD_IN_PROCESS", "-fno-tree-loop-distribute-patterns"],
    ),
    (
        "mosix-exec",
        "exe",
        [
            "mosix_exec.c",
            "mosix_guard.c",
            "process_mode.c",
            "guard_agent.c",
            "guard_cbor.c",
            "forward_channel.c",
            "seccomp_filter.c",
        ],
        [],
    ),
    (
        "mosix-ckpt",
        "exe",
        [
            "mosix_ckpt.c",
            "ckpt_capture_util.c",
            "ckpt_capture_trace.c",
            "ckpt_capture_image.c",
            "ckpt_capture_output.c",
            "ckpt_capture_stream.c",
            "ckpt_capture_memory.c",
            "ckpt_capture_files.c",
            "ckpt_capture_process.c",
            "ckpt_handoff.c",
            "ckpt_away.c",
            "ckpt_capture_vdso.c",
            "vdso_time.c",
            "seccomp_filter.c",
        ],
        [],
    ),
    (
        "mosix-deputy",
        "exe",
        ["mosix_deputy.c", "forward_marshal.c", "forward_channel.c", "guard_cbor.c"],
        ["-static"],  # it runs in a process whose filters name the old libc's addresses
    ),
    (
        "mosix-remote",
        "exe",
        [
            "mosix_remote.c",
            "remote_filemap.c",
            "remote_mmsg.c",
            "remote_discipline.c",
            "process_mode.c",
            "forward_marshal.c",
            "forward_channel.c",
            "seccomp_filter.c",
        ],
        [],
    ),
    (
        "mosix-restore",
        "static",
        [
            "mosix_restore.c",
            "restore_image.c",
            "restore_cpu.c",
            "restore_mem.c",
            "restore_state.c",
            "restore_sys.c",
            "restore_vdso.c",
            "vdso_time.c",
            "seccomp_filter.c",
        ],
        [
            "-mcmodel=large",
            "-fno-stack-protector",
            "-fno-builtin",
            "-fno-tree-loop-distribute-patterns",
            "-fcf-protection=none",
            "-Wl,-Ttext-segment=0x200000000000",
            "-Wl,--build-id=none",
        ],
    ),
]


def compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)[:1]


def build_target(name: str, kind: str, sources: list[str], extra: list[str], outdir: Path) -> None:
    srcs = [str(CSRC / s) for s in sources]
    out = outdir / name
    cmd = [*compiler(), *CFLAGS, "-I", str(CSRC), *extra]
    if kind == "shared":
        cmd += ["-shared", "-fPIC"]
    elif kind == "static":
        cmd += ["-static", "-nostdlib", "-ffreestanding", "-fno-pie", "-no-pie"]
    cmd += ["-o", str(out), *srcs]
    print("  ", " ".join(cmd))
    subprocess.run(cmd, check=True)


def build_all(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "__init__.py").write_text('"""Compiled native parts (built by setup.py)."""\n')
    for name, kind, sources, extra in NATIVE_TARGETS:
        build_target(name, kind, sources, extra, outdir)


class BuildPyWithNative(build_py):
    def run(self) -> None:
        super().run()
        build_all(Path(self.build_lib) / "mosix" / "_native")


class BuildNative(Command):
    description = "compile the C parts into mosix/_native in the source tree"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        build_all(HERE / "mosix" / "_native")


class BinaryDistribution(Distribution):
    """The package ships compiled code, so its wheel is platform specific."""

    def has_ext_modules(self) -> bool:
        return True


setup(
    cmdclass={"build_py": BuildPyWithNative, "build_native": BuildNative},
    distclass=BinaryDistribution,
)
