"""Build the C parts of the package (preload shim, helper executables).

Most C parts are not Python extension modules: they are a shared library that
is LD_PRELOADed into user programs and small executables that run outside
Python.  They are compiled with the system C compiler into ``mosix/_native``
inside the build tree, so a wheel carries them next to the Python code.  One
is: the cffi binding Python calls in-process (mosix/native/cffi_build.py
defines it), compiled into the same folder.

``python setup.py build_native`` compiles them into the source tree
(``mosix/_native``) for working from a checkout without installing.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shlex
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from setuptools import Command, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
CFLAGS = ["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]

# csrc/ has a folder per program, each with a BUILD file (a Python literal:
# output name, kind, extra flags, and the files outside the folder it uses);
# a program is every .c in its folder plus those.  Folders without a BUILD
# hold what several programs use: common/ (shared code and headers),
# generated/ (headers generated from Python: python -m mosix.generate) and
# forward/ (the forwarded calls' marshaller).  csrc/preload_shim.c (the shim's
# main file) and csrc/seccomp_filter.c stay at the top.  Every program
# compiles with -I for each folder it takes sources from, common/ and generated/.
SHARED_FOLDERS = ("common", "generated")
# kind "shared": a position-independent shared library (LD_PRELOAD).
# kind "exe": an ordinary executable.
# kind "static": a static executable without libc (the restorer), not PIE.
KIND_FLAGS = {
    "shared": ["-shared", "-fPIC"],
    "exe": [],
    "static": ["-static", "-nostdlib", "-ffreestanding", "-fno-pie", "-no-pie"],
}
BUILD_KEYS = {"output", "kind", "uses", "flags"}


@dataclass(frozen=True)
class Program:
    output: str
    kind: str
    sources: list[Path]
    flags: list[str]

    def include_dirs(self) -> list[Path]:
        dirs = [*dict.fromkeys(s.parent for s in self.sources)]
        return dirs + [CSRC / f for f in SHARED_FOLDERS if CSRC / f not in dirs]


def read_program(build: Path) -> Program:
    """The program declared by csrc/FOLDER/BUILD."""
    decl = ast.literal_eval(build.read_text())
    if not isinstance(decl, dict) or set(decl) != BUILD_KEYS:
        raise SystemExit(f"{build}: a dict with exactly the keys {sorted(BUILD_KEYS)}")
    if decl["kind"] not in KIND_FLAGS:
        raise SystemExit(f"{build}: kind {decl['kind']!r} is none of {sorted(KIND_FLAGS)}")
    own = sorted(build.parent.glob("*.c"))
    if not own:
        raise SystemExit(f"{build}: no .c files in {build.parent}")
    uses = [CSRC / u for u in decl["uses"]]
    for u in uses:
        if not u.is_file() or u.parent == build.parent:
            raise SystemExit(f"{build}: uses {u}, which is no file outside the folder")
    return Program(decl["output"], decl["kind"], own + uses, list(decl["flags"]))


def native_programs() -> list[Program]:
    """Every program under csrc/; each .c file must belong to one of them."""
    programs = [read_program(b) for b in sorted(CSRC.glob("*/BUILD"))]
    built = {s for p in programs for s in p.sources}
    orphans = sorted(str(c.relative_to(CSRC)) for c in CSRC.rglob("*.c") if c not in built)
    if orphans:
        raise SystemExit(f"csrc: no program builds {', '.join(orphans)}")
    return programs


def compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)[:1]


def build_program(program: Program, outdir: Path) -> None:
    includes = [arg for d in program.include_dirs() for arg in ("-I", str(d))]
    cmd = [*compiler(), *CFLAGS, *includes, *program.flags, *KIND_FLAGS[program.kind]]
    cmd += ["-o", str(outdir / program.output), *map(str, program.sources)]
    print("  ", " ".join(cmd))
    subprocess.run(cmd, check=True)


def build_cffi(outdir: Path) -> None:
    """The in-process binding: mosix/native/cffi_build.py, loaded by its path (the
    package is not importable while it is being built)."""
    spec = importlib.util.spec_from_file_location(
        "mosix_cffi_build", HERE / "mosix" / "native" / "cffi_build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("   cffi", module.MODULE, "->", module.build(outdir))


def build_all(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "__init__.py").write_text('"""Compiled native parts (built by setup.py)."""\n')
    for program in native_programs():
        build_program(program, outdir)
    build_cffi(outdir)


class BuildPyWithNative(build_py):
    """The package copied into the build tree, then its C parts compiled there.

    setuptools copies into ``build/lib*`` without emptying it, and a wheel takes
    all it finds there: a module that moved or went away would stay in every
    later wheel from this checkout.  So the package's old copy goes first."""

    def run(self) -> None:
        build_lib = Path(self.build_lib).resolve()
        for top in sorted({name.split(".")[0] for name in self.packages or ()}):
            old = build_lib / top
            if old.is_dir() and old != HERE / top:  # never the source tree itself
                shutil.rmtree(old)
        super().run()
        build_all(build_lib / "mosix" / "_native")


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
