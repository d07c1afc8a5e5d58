"""The house: every module imports, no import cycles, each C helper spawned from one place.

The scan is static (the import statements of every module, those inside
functions too), so a cycle that only a rarely taken path would close is
found as well.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import mosix

ROOT = Path(mosix.__file__).resolve().parent
SKIPPED = ("_native",)  # compiled parts, no Python of ours


def module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent)
        if relative.parts[1] in SKIPPED:
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = module_files()


def run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for the type checker only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for other in node.orelse:
                yield other
                yield from run_time_nodes(other)
            continue
        yield node
        yield from run_time_nodes(node)


def imported(name: str, path: Path) -> Iterator[str]:
    """The mosix modules ``name`` imports (a package for ``from package import module``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in run_time_nodes(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for alias in node.names:
                whole = f"{base}.{alias.name}"
                yield whole if whole in MODULES else base


def graph(key: str = "module") -> dict[str, set[str]]:
    """Who imports whom among mosix modules (or, ``key="package"``, among the
    packages and top-level modules right below ``mosix``)."""

    def node(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if key == "package" else module

    edges: dict[str, set[str]] = {node(m): set() for m in MODULES}
    for name, path in MODULES.items():
        for target in imported(name, path):
            if target in MODULES and node(target) != node(name):
                edges[node(name)].add(node(target))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_no_import_cycle_between_modules() -> None:
    assert cycles(graph("module")) == []


def test_no_import_cycle_between_packages() -> None:
    """mosix.home_agent, mosix.remote_agent, mosix.cluster, mosix.mosrun, ... and the
    top-level modules: each may lean on others, never round in a circle."""
    assert cycles(graph("package")) == []


def test_the_scan_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def spawned(name: str, path: Path) -> set[str]:
    """The C helpers a module starts: ``native_path(X)`` heading an argv list, directly
    or through a local name (X evaluated in the module's namespace)."""
    tree = ast.parse(path.read_text(), str(path))
    module = importlib.import_module(name)

    def helper(call: ast.expr) -> str | None:
        if not (
            isinstance(call, ast.Call)
            and getattr(call.func, "id", getattr(call.func, "attr", "")) == "native_path"
            and len(call.args) == 1
        ):
            return None
        try:
            value = eval(compile(ast.Expression(call.args[0]), str(path), "eval"), vars(module))
        except NameError:  # a parameter: the seam's own native_path, not a spawn
            return None
        return str(value)

    found: set[str] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        paths: dict[str, str] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, program = node.targets[0], helper(node.value)
                if isinstance(target, ast.Name) and program is not None:
                    paths[target.id] = program
        for node in ast.walk(function):
            if isinstance(node, ast.List) and node.elts:
                head = node.elts[0]
                program = helper(head)
                if program is None and isinstance(head, ast.Name):
                    program = paths.get(head.id)
                if program is not None:
                    found.add(program)
    return found


def test_each_helper_is_spawned_from_one_module() -> None:
    """Its wrapper in mosix/native/ (the launcher: mosix.discipline.launcher)."""
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for program in spawned(name, path):
            where.setdefault(program, []).append(name)
    assert {"mosix-exec", "mosix-ckpt", "mosix-deputy", "mosix-remote"} <= set(where)
    assert {p: m for p, m in where.items() if len(m) != 1} == {}
