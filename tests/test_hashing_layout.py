"""The shape of ``cashet.hashing``: imports go one way, and the late bindings are in place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cashet.hashing

PACKAGE = Path(cashet.hashing.__file__).parent


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """Sibling modules ``path`` imports anywhere (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] != ["cashet", "hashing"]:
                continue
            if len(parts) > 2:
                found.add(parts[2])
            else:
                found.update(a.name if a.name in modules else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[2] for a in node.names if a.name.startswith("cashet.hashing.")
            )
    return found - {path.stem}


def test_hashing_modules_import_one_way() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {m: _imports_of(PACKAGE / f"{m}.py", modules) for m in modules}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for dep in graph[m]:
            visit(dep, (*path, m))
        done.add(m)

    for m in sorted(modules):
        visit(m, ())


def test_hashing_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 600, sizes


def test_values_alone_encodes_functions() -> None:
    # the function digest is a late binding (objects <- functions): importing only the
    # value encoding must still give functions their identity
    code = (
        "from cashet.hashing.values import hash_value\n"
        "def f(x):\n    return x + 1\n"
        "print(hash_value(f))\n"
    )
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr
    assert len(alone.stdout.strip()) == 64
