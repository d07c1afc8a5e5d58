"""A wheel built from a checkout holds exactly the checkout's modules.

pip builds in the source tree and setuptools copies the package into
``build/lib`` without emptying it first, so a module that moved or went away
stayed in every later wheel from that checkout (setup.py now empties it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

TREE = Path(__file__).resolve().parents[1]  # the checkout (mosix may be installed)
COPIED = ("pyproject.toml", "setup.py", "README.md", "mosix", "csrc")
NOT_SOURCE = shutil.ignore_patterns("__pycache__", "_native", "*.egg-info")
BUILD_TIMEOUT = 600.0
PLATFORM_LIB = f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"


def tree_modules(package: Path) -> set[str]:
    """The .py files of the package, as paths in a wheel (mosix/...)."""
    return {
        str(p.relative_to(package.parent))
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts and "_native" not in p.parts
    }


@pytest.mark.slow
def isolation() -> list[str]:
    """Build with this environment's setuptools when it is new enough for pyproject.toml
    (faster); else in pip's isolated build environment, as ``pip install .`` does."""
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return []
    return ["--no-build-isolation"] if major >= 77 else []


def test_a_wheel_leaves_out_what_a_stale_build_lib_holds(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("building the wheel compiles the C parts: gcc is needed")
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in COPIED:
        source = TREE / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=NOT_SOURCE)
        else:
            shutil.copy2(source, copy / name)
    # what an earlier build left: setuptools builds into build/lib, or (a package
    # with compiled parts, as this one) build/lib.PLATFORM-IMPLEMENTATION
    build_libs = [copy / "build" / "lib", copy / "build" / PLATFORM_LIB]
    for build_lib in build_libs:
        stale = build_lib / "mosix"
        (stale / "old_package").mkdir(parents=True)
        (stale / "old_module.py").write_text('"""A module that moved away."""\n')
        (stale / "old_package" / "__init__.py").write_text("")
    out = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation()]
    result = subprocess.run(
        [*pip_wheel, "-w", str(out), str(copy)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert any((b / "mosix" / "__init__.py").exists() for b in build_libs)  # one was used
    (wheel,) = out.glob("mosix-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "mosix/old_module.py" not in names
    assert "mosix/old_package/__init__.py" not in names
    in_wheel = {n for n in names if n.endswith(".py") and not n.startswith("mosix/_native/")}
    assert in_wheel == tree_modules(copy / "mosix")
    assert "mosix/_native/mosix-exec" in names  # the C parts are still built into it
