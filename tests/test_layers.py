"""The package's folders are layers: no module imports one above it, and no import circle.

Every import counts, those inside functions too (a lazy import that breaks a
circle at load time is still a circle in the design). The checks read the
source (``ast``), so they hold without the native core.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_rseq"
LAYERS = {
    "": 0,  # errors, _native, _sources, _version: shared by every layer
    "host": 1,
    "engine": 2,
    "elf": 3,
    "gate": 3,
    "vm": 3,
    "plugin": 4,
    "top": 5,  # __init__ and __main__: the public API and the gate's command line
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The ``pytest_rseq`` modules ``path`` imports (a package import counts as its
    ``__init__``; ``from pkg import mod`` as ``pkg.mod`` when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pytest_rseq"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("pytest_rseq"):
                target = node.module
            else:
                continue
            if node.module:  # ``from . import mod`` loads the package already loaded
                found.add(target)
            found.update(
                f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES
            )
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    parts = module.split(".")
    if module in ("pytest_rseq", "pytest_rseq.__main__"):
        return LAYERS["top"]
    return LAYERS.get(parts[1], LAYERS[""])


def graph() -> dict[str, set[str]]:
    return {name: imports(path) for name, path in MODULES.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_layer_above_it() -> None:
    upward = [
        f"{src} -> {dst}"
        for src, targets in graph().items()
        for dst in sorted(targets)
        if layer(dst) > layer(src)
    ]
    assert upward == []


def test_every_folder_says_what_lives_there() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80, f"{init} needs a docstring saying what lives there"


def test_the_layer_check_sees_an_upward_import() -> None:
    assert layer("pytest_rseq.host.cpuset") < layer("pytest_rseq.engine.runner")
    assert layer("pytest_rseq.engine.runner") < layer("pytest_rseq.plugin.fixtures")
    assert layer("pytest_rseq.errors") < layer("pytest_rseq.host.cpuset")
    assert layer("pytest_rseq.gate") == layer("pytest_rseq.gate.suite")
