"""The package's shape: small import circles, small modules, actors that know no engine.

The import graph counts type-only imports too (a module that names another in an
annotation depends on it as much as one that calls it). The walk is the one of
the project's `import_cycles.py` tool.
"""

from __future__ import annotations

import ast
from pathlib import Path

import actorflow

PACKAGE = Path(actorflow.__file__).parent
MAX_CIRCLE = 2
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports, anywhere in it (functions and TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    # An import of a package's `__init__` (its re-exports) is not an edge into each module.
    return {
        name: {
            m
            for m in _imports_of(path, name)
            if m in files and m != name and files[m].name != "__init__.py"
        }
        for name, path in files.items()
    }


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_circle_is_larger_than_two_modules() -> None:
    graph = _graph()
    assert len(graph) > 30, "the walk found the package's modules"
    too_big = [sorted(c) for c in _circles(graph) if len(c) > MAX_CIRCLE]
    assert not too_big, f"import circles of more than {MAX_CIRCLE} modules: {too_big}"


def test_the_walk_finds_a_known_circle() -> None:
    """The check above can fail: workflow code's context and its stream writers know each
    other (the context makes writers, a writer names the step that owns it)."""
    circles = _circles(_graph())
    assert any({"actorflow._context", "actorflow._streams"} <= c for c in circles)


def test_actor_modules_do_not_know_the_engine() -> None:
    """Actors reach their engine only through `RunHost`."""
    graph = _graph()
    actor_modules = [m for m in graph if m.startswith("actorflow._actor")]
    assert len(actor_modules) >= 8
    for module in actor_modules:
        assert "actorflow._engine" not in graph[module], module
        assert "actorflow._directory" not in graph[module], module


def test_no_module_is_longer_than_500_lines() -> None:
    lengths = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE.rglob("*.py")
    }
    too_long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
