"""The architecture, enforced: no import cycles, and each layer imports only those below it.

The layers are those of ``docs/architecture.md``. Every ``import`` in ``src/cashet`` counts,
at module level or inside a function, except under ``if TYPE_CHECKING:`` (never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "cashet"

#: Bottom to top. A module imports its own package, its own layer's modules of the same
#: package, or anything in a lower layer; names in one layer are independent of each other.
LAYERS: list[set[str]] = [
    {"_version", "errors", "_process", "_humanize", "_log", "_progress"},
    {"models"},
    {"protocols"},
    {"hashing", "serializers"},
    {"core"},
    {"stores"},
    {"provenance", "executors"},
    {"server"},
    {"_queries"},
    {"_client_base", "_async_queries"},
    {"client", "async_client", "store", "redis_store", "postgres_store", "blob_store", "executor"},
    {"cli"},
    {"__init__", "__main__"},
]
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str:
    """``cashet.stores.sqlite.store`` -> ``stores``; ``cashet`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` for every import that can run, resolved to a module."""
    package = module if is_package else module.rpartition(".")[0]
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from cashet.x import y``: y may be a submodule; the graph keeps the module
                # when it is one, else the package it came from.
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULES else base
        stack.extend(ast.iter_child_nodes(node))


MODULES = {module_name(p) for p in SRC.rglob("*.py")}


def graph() -> dict[str, set[tuple[int, str]]]:
    edges: dict[str, set[tuple[int, str]]] = {}
    for path in SRC.rglob("*.py"):
        name = module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        found = set()
        for line, target in runtime_imports(tree, name, path.name == "__init__.py"):
            if (target == "cashet" or target.startswith("cashet.")) and target != name:
                found.add((line, target))
        edges[name] = found
    return edges


def test_every_room_has_a_layer() -> None:
    rooms = {room(m) for m in MODULES}
    assert rooms - set(LAYER_OF) == set(), "add the new room to LAYERS and the architecture doc"


def test_each_layer_imports_only_those_below_it() -> None:
    wrong = []
    for module, targets in graph().items():
        here = room(module)
        for line, target in sorted(targets):
            there = room(target)
            if there == here:
                continue
            if LAYER_OF[there] >= LAYER_OF[here]:
                wrong.append(f"{module}:{line} imports {target} ({here} -> {there})")
    assert not wrong, "layering broken:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = {m: {t for _, t in ts if t in MODULES} for m, ts in graph().items()}
    # Importing a submodule runs its package's __init__ first: that edge is real too, but a
    # package importing its own submodules is how packages re-export, not a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("limit", [600])
def test_modules_stay_small(limit: int) -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert not big, f"modules over {limit} lines: {big}"
