"""The shells stay thin, and the client methods they stand on.

The CLI and the HTTP server call ``Client``/``AsyncClient`` methods only: they never touch a
store, never test for a store class, never name the SQLite store's files; the server never
imports a client or the CLI at runtime (import cycles anywhere: tests/test_layers.py)
(checked on the source, function-level imports included, ``if TYPE_CHECKING:`` excluded).
The methods: ``lookup`` (a cache peek that never runs or claims anything),
``resolve_result``, ``result_bytes``, ``as_task``, ``open_existing``, ``database_info``,
``nonblocking_reads``.
"""

from __future__ import annotations

import ast
import asyncio
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cashet
from cashet import Client
from cashet.async_client import AsyncClient
from cashet.core.options import make_options
from cashet.errors import StoreError
from cashet.models import ObjectRef, utcnow

pytestmark = pytest.mark.filterwarnings("ignore::cashet.errors.ClosureWarning")

SRC = Path(cashet.__file__).parent
SHELLS = ("cli", "server")
CALLS: list[Any] = []


def add(x: int, y: int = 1) -> int:
    CALLS.append((x, y))
    return x + y


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


# --- the source: what the shells may and may not do ----------------------------------------


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["cashet", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _runtime_imports(name: str) -> set[str]:
    """The cashet modules ``name`` imports at runtime, at any depth of its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _runtime_imports(name) for name in MODULES}


def _shell_modules() -> list[str]:
    return sorted(m for m in MODULES if m.split(".")[1:2] and m.split(".")[1] in SHELLS)


def test_the_shells_never_touch_a_store() -> None:
    for name in _shell_modules():
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            where = f"{name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"store", "_sync", "get_blob"}, where
            if isinstance(node, ast.Name):
                assert not node.id.endswith("Store"), where
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert "meta.db" not in node.value, where


def test_no_sqlite_file_names_or_store_checks_outside_the_sqlite_store() -> None:
    for name, path in MODULES.items():
        if name.startswith("cashet.stores.sqlite"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "meta.db" not in text, name
        assert "isinstance(self.store, SQLiteStore)" not in text, name


def test_the_server_never_imports_a_client_or_the_cli() -> None:
    banned = ("cashet.client", "cashet.async_client", "cashet.cli")
    for name in (m for m in MODULES if m.startswith("cashet.server")):
        bad = sorted(m for m in GRAPH[name] if m.startswith(banned))
        assert not bad, (name, bad)


def test_the_cli_group_imports_no_command_module() -> None:
    assert not [m for m in GRAPH["cashet.cli.app"] if m.startswith("cashet.cli.")]


def test_provenance_stays_below_clients_and_shells() -> None:
    banned = ("cashet.client", "cashet.async_client", "cashet.cli", "cashet.server")
    for name in (m for m in MODULES if m.startswith("cashet.provenance")):
        assert not [m for m in GRAPH[name] if m.startswith(banned)], name


def test_the_cli_entry_points_still_work() -> None:
    from cashet.__main__ import main as module_main
    from cashet.cli import main

    assert module_main is main
    assert {"log", "show", "get", "diff", "history", "stats", "rm", "gc", "clear"} <= set(
        main.commands
    )
    assert {"invalidate", "export", "import", "serve"} <= set(main.commands)


# --- the client methods the shells use ------------------------------------------------------


def test_lookup_finds_a_hit_without_running_or_recording(client: Any) -> None:
    assert client.lookup(add, 2, y=3) is None
    ref = client.submit(add, 2, y=3)
    CALLS.clear()
    hit = client.lookup(add, 2, y=3)
    assert hit is not None and hit.cached
    assert (hit.commit_hash, hit.hash) == (ref.commit_hash, ref.hash)
    assert hit.load() == 5
    assert client.lookup(add, 2, y=4) is None
    assert client.lookup(add, 2, y=3, _cache=False) is None  # such calls always run
    assert client.lookup(add, 2, y=3, _force=True) is None
    assert CALLS == [] and len(client.log()) == 1
    with pytest.raises(TypeError, match="callable"):
        client.lookup(5)


def test_lookup_applies_task_options(client: Any) -> None:
    adder = client.task(name="adder", force=True)(add)
    adder(1)
    assert client.lookup(adder, 1) is None  # force=True: such a call always runs
    hit = client.lookup(adder, 1, _force=False)
    assert hit is not None and hit.commit.func_name == "adder"


def test_result_bytes_and_resolve_result(client: Any) -> None:
    ref = client.submit(add, 20, y=22)
    data = client.result_bytes(ref.commit_hash[:10])
    assert pickle.loads(data) == 42
    assert client.result_bytes(ref.hash) == data  # by blob hash
    assert client.result_bytes(ref.object_ref) == data
    blob, commit = client.resolve_result(ref.commit_hash[:12])
    assert blob.hash == ref.hash and commit is not None and commit.hash == ref.commit_hash
    blob, commit = client.resolve_result(ref.hash)
    assert blob.hash == ref.hash and commit is None
    with pytest.raises(cashet.CommitNotFoundError):
        client.result_bytes("e" * 64)


def test_as_task_applies_options_without_registering(client: Any) -> None:
    task = client.as_task(add, make_options(name="renamed", tags={"k": "v"}))
    assert "renamed" not in client.tasks
    ref = client.submit(task, 4)
    commit = client.show(ref.commit_hash)
    assert commit.func_name == "renamed" and commit.tags == {"k": "v"}
    assert client.lookup(task, 4) is not None


def test_database_info(client: Any) -> None:
    client.submit(add, 1)
    info = client.database_info()
    if "Redis" in repr(client.store):
        assert info is None
    else:
        assert info is not None and info[0] == "meta.db" and info[1] > 0


def test_open_existing_never_creates_a_store(tmp_path: Path) -> None:
    for cls in (Client, AsyncClient):
        with pytest.raises(StoreError, match="no cashet store at"):
            cls.open_existing(tmp_path / "missing")
        assert not (tmp_path / "missing").exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="is not a cashet store"):
        Client.open_existing(tmp_path / "plain")
    Client(store_dir=tmp_path / "s").close()
    with Client.open_existing(tmp_path / "s") as c:
        assert c.log() == []


def test_nonblocking_reads(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as c:
        assert c.nonblocking_reads is True

    async def main() -> bool:
        async with AsyncClient(store_dir=tmp_path) as ac:
            return ac.nonblocking_reads

    assert asyncio.run(main()) is False


def test_lookup_records_the_access_unless_read_only(tmp_path: Path) -> None:
    with Client(store_dir=tmp_path) as c:
        ref = c.submit(add, 1)
        old = utcnow() - timedelta(days=3)
        c.store.touch(ref.commit_hash, old)
        # Hits are counted in memory (issue 15): a read-only peek serves and records nothing.
        assert c.lookup(add, 1, _read_only=True) is not None
        shown = c.show(ref.commit_hash)
        assert shown is not None and shown.last_accessed == old and shown.hits == 0
        hit = c.lookup(add, 1)
        assert hit is not None
        shown = c.show(ref.commit_hash)
        assert shown is not None and shown.last_accessed is not None
        assert shown.last_accessed > old and shown.hits == 1


def test_async_lookup_records_the_access(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(store_dir=tmp_path) as c:
            ref = await c.submit(add, 1)
            old = utcnow() - timedelta(days=3)
            await c.store.touch(ref.commit_hash, old)
            assert await c.lookup(add, 1, _read_only=True) is not None  # nothing recorded
            assert (await c.show(ref.commit_hash)).hits == 0
            hit = await c.lookup(add, 1)
            assert hit is not None and hit.cached and await hit.load() == 2
            accessed = (await c.show(ref.commit_hash)).last_accessed
            assert accessed is not None and accessed > old
            assert await c.result_bytes(hit.object_ref) == await c.result_bytes(hit.hash)
            assert isinstance((await c.resolve_result(hit.hash))[0], ObjectRef)

    asyncio.run(main())
