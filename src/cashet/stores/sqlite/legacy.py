"""Open a store directory made by the published cashet 0.4.x/0.5.x: migrate it in place.

An old ``meta.db`` has ``PRAGMA user_version`` 0 and a ``commits`` table (ours at version 0
is an empty file); the published layout has an ``output_hash`` column (small blobs in
``inline_objects``, larger ones zlib files under ``objects/`` named by SHA-256).
:func:`migrate_if_legacy` (called before the store opens its database) turns it into this
cashet's schema keeping every commit, tag, blob and history:

1. under an exclusive lock file, the old database is taken out of WAL mode (so no WAL of
   it is left beside the file that replaces it);
2. a new database is built beside it (``meta.db.migrating``): every old blob is verified
   against its SHA-256 and stored again under its BLAKE3 name (a blob that does not verify
   is left out and its commit recorded as failed, saying why: never a wrong value);
3. the new database atomically replaces the old one (``os.replace``), then the old blob
   files are removed.

A crash before step 3 leaves the old store as it was (a later open starts again); one after
leaves the migrated store (and at worst some unreferenced old files). What cannot be
migrated is refused with :class:`LegacyStoreError`, naming the version and the ways out.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from cashet._log import log
from cashet.errors import StoreError
from cashet.hashing.commits import commit_to_json
from cashet.models import ObjectRef
from cashet.stores.blobs import blob_hash, encode_blob
from cashet.stores.legacy import LEGACY, NOT_CACHED, legacy_blob, legacy_commit
from cashet.stores.objects.files import FileBlobStore, unlink
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import readonly_uri
from cashet.stores.sqlite.lean import ROW_CREATED, commit_row, index_commit, register_functions

__all__ = ["LegacyStoreError", "is_legacy", "migrate_if_legacy", "wipe"]

_DB = "meta.db"
_TMP = _DB + ".migrating"
_LOCK = ".migrate.lock"
#: The columns of the old commits table that migration reads (others are optional).
_REQUIRED = frozenset(
    {"hash", "func_name", "func_hash", "args_hash", "status", "created_at", "output_hash"}
)


class LegacyStoreError(StoreError):
    """A store of the published cashet 0.4.x/0.5.x that cannot be migrated."""


def refusal(path: Path, why: str) -> LegacyStoreError:
    """The error that names the old version and the two ways out."""
    return LegacyStoreError(
        f"{path} is a store of {LEGACY} that cannot be migrated ({why}). Either empty it "
        f"with `cashet --store-dir {path} clear` (its cached results are lost), or point "
        "cashet at a new store directory (Client(store_dir=...) or --store-dir) and keep "
        "this one for the old cashet"
    )


def _header_version(db_file: Path) -> int | None:
    """``user_version`` of ``meta.db`` (``None``: absent or not a database).

    Read through SQLite, never by opening the file ourselves: closing any descriptor of a
    file drops every POSIX lock this process holds on it, the locks of the store's own
    connections included (a second store opened in a process made the first read stale
    snapshots: tests/test_sqlite_store.py::test_a_second_store_in_one_process_...).
    """
    if not db_file.is_file():
        return None
    try:
        conn = sqlite3.connect(readonly_uri(os.fspath(db_file)), uri=True, timeout=30.0)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _old_schema(conn: sqlite3.Connection) -> bool:
    if conn.execute("PRAGMA user_version").fetchone()[0] != 0:
        return False
    # Judged by the old layout itself, not by the version alone: our own store, while
    # another thread or process is still creating it, can show a commits table at
    # version 0 (tests/test_exactly_once.py found that race). Ours always has a body
    # column; an old cashet's commits table (or one of a layout we do not know) has none.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(commits)").fetchall()}
    return bool(columns) and "body" not in columns


def is_legacy(path: Path) -> bool:
    """Whether ``path`` holds an old-format ``meta.db`` (cheap for current stores)."""
    db_file = path / _DB
    if _header_version(db_file) != 0:
        return False  # ours (migrated), absent or not a database: not ours to judge here
    try:
        conn = sqlite3.connect(os.fspath(db_file), timeout=30.0)
    except sqlite3.Error:
        return False
    try:
        return _old_schema(conn)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path/.migrate.lock`` (one migration at a time)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: one process is assumed
        yield
        return
    try:
        fd = os.open(path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        # A read-only directory: nothing can be migrated there, and an old store is then
        # refused when its migration fails to write.
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def migrate_if_legacy(path: Path, inline_threshold: int) -> int:
    """Migrate an old store in ``path`` in place; return the commits migrated (0: none).

    Raises:
        LegacyStoreError: the old store cannot be migrated (it is left as it was).
    """
    if _header_version(path / _DB) != 0:
        return 0  # ours (the usual case: no connection opened), absent or not a database
    # Checked under the lock: a connection opened while another process migrates would
    # keep that process from taking the old database out of WAL mode.
    with _locked(path):
        if not is_legacy(path):  # another process migrated it meanwhile
            return 0
        try:
            return _migrate(path, inline_threshold)
        except LegacyStoreError:
            raise
        except (sqlite3.Error, OSError, StoreError, ValueError, TypeError, KeyError) as exc:
            raise refusal(path, f"{type(exc).__name__}: {exc}") from exc
        finally:
            for name in (_TMP, _TMP + "-wal", _TMP + "-shm", _TMP + "-journal"):
                unlink(os.fspath(path / name))


def _migrate(path: Path, inline_threshold: int) -> int:
    db_file = path / _DB
    old = sqlite3.connect(os.fspath(db_file), timeout=30.0, isolation_level=None)
    try:
        # Checkpoint the WAL into the file and drop it: the file that replaces this one must
        # not find an old WAL beside it. Fails while an old cashet still has the store open.
        busy = "another process (an old cashet?) has it open: close it and try again"
        try:
            mode = old.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
        except sqlite3.OperationalError as exc:
            raise refusal(path, busy) from exc
        if str(mode).lower() != "delete" or (path / (_DB + "-wal")).exists():
            raise refusal(path, busy)
        old.row_factory = sqlite3.Row
        old.execute("BEGIN")  # one consistent read
        files = FileBlobStore(os.fspath(path / "objects"), path)
        for name in (_TMP, _TMP + "-wal", _TMP + "-shm", _TMP + "-journal"):
            unlink(os.fspath(path / name))  # a crashed attempt's leftovers
        new = sqlite3.connect(os.fspath(path / _TMP), isolation_level=None)
        try:
            count, old_files, lost = _build(old, new, files, path, inline_threshold)
        finally:
            new.close()
        old.execute("COMMIT")
    finally:
        old.close()
    if (path / (_TMP + "-wal")).exists():  # pragma: no cover - close checkpoints it
        raise refusal(path, "the new database was not closed cleanly")
    unlink(os.fspath(path / (_DB + "-shm")))  # the old WAL index: nothing may reuse it
    os.replace(path / _TMP, db_file)
    for old_file in old_files:
        unlink(old_file)
        with suppress(OSError):
            os.rmdir(os.path.dirname(old_file))  # only if now empty
    log.warning(
        "migrated %d commit(s) of a %s store in %s; %s%s",
        count,
        LEGACY,
        path,
        NOT_CACHED,
        f". {lost} result(s) did not verify and were left out" if lost else "",
    )
    return count


def _build(
    old: sqlite3.Connection,
    new: sqlite3.Connection,
    files: FileBlobStore,
    path: Path,
    inline_threshold: int,
) -> tuple[int, list[str], int]:
    """Fill the new database; return (commits, old blob files to remove, lost results)."""
    columns = {row[1] for row in old.execute("PRAGMA table_info(commits)")}
    missing = sorted(_REQUIRED - columns)
    if missing:
        raise refusal(path, f"its commits table has no {', '.join(missing)}: an unknown layout")
    new.execute("PRAGMA journal_mode = WAL")
    new.execute("BEGIN IMMEDIATE")
    register_functions(new)
    for step in sql.MIGRATIONS:
        for statement in step:
            new.execute(statement)
    new.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION}")
    has_inline = bool(
        old.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inline_objects'"
        ).fetchone()
    )
    refs: dict[str, ObjectRef] = {}  # old hash -> new ref
    renamed: dict[str, str] = {}  # old hash -> new hash (the inputs of later commits)
    failures: dict[str, str] = {}  # old hash -> why it was left out
    old_files: list[str] = []
    now = time.time()

    def migrate_blob(h: str) -> None:
        if h in refs or h in failures:
            return
        stored: bytes | None = None
        if has_inline:
            row = old.execute("SELECT data FROM inline_objects WHERE hash = ?", (h,)).fetchone()
            stored = None if row is None else bytes(row[0])
        file = os.path.join(files.root, h[:2], h[2:]) if len(h) > 2 else ""
        if stored is None and file and os.path.isfile(file):
            with open(file, "rb") as f:
                stored = f.read()
            old_files.append(file)
        if stored is None:
            failures[h] = f"its blob {h[:12]} is missing"
            return
        data = legacy_blob(stored, h)
        if data is None:
            failures[h] = f"its blob {h[:12]} does not match its hash"
            return
        nh = blob_hash(data)
        encoded = encode_blob(data)
        inline = len(encoded) < inline_threshold
        if not inline:
            files.write(files.path(nh), encoded)
        new.execute(
            sql.BLOB_UPSERT, (nh, len(data), len(encoded), encoded if inline else None, now)
        )
        refs[h] = ObjectRef(nh, len(data))
        renamed[h] = nh

    count = 0
    for row in old.execute("SELECT * FROM commits ORDER BY created_at, rowid"):
        old_commit: dict[str, Any] = dict(row)
        out = old_commit.get("output_hash")
        if out:
            migrate_blob(str(out))
        tags = old_commit.get("tags")
        old_commit["tags"] = _json_map(tags)
        old_commit["input_refs"] = _json_list(old_commit.get("input_refs"))
        commit = legacy_commit(
            old_commit,
            refs.get(str(out)) if out else None,
            renamed,
            failures.get(str(out)) if out else None,
        )
        _insert(new, commit)
        count += 1
    new.execute("COMMIT")
    return count, old_files, len(failures)


def _json_map(value: Any) -> dict[str, Any]:
    import json

    if not value:
        return {}
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"tags are not a JSON object: {value!r}")
    return data


def _json_list(value: Any) -> list[Any]:
    import json

    if not value:
        return []
    data = json.loads(value)
    if not isinstance(data, list):
        raise ValueError(f"input refs are not a JSON list: {value!r}")
    return data


def _insert(conn: sqlite3.Connection, commit: Any) -> None:
    row = commit_row(commit, None, commit_to_json(commit))
    if conn.execute(sql.INSERT_COMMIT, row).rowcount:
        index_commit(conn, commit, row[ROW_CREATED])


def wipe(path: Path) -> None:
    """Remove an old store's database and blob files (``cashet clear`` on a refused store)."""
    import shutil

    for name in (_DB, _DB + "-wal", _DB + "-shm", _TMP, _TMP + "-wal", _TMP + "-shm"):
        unlink(os.fspath(path / name))
    shutil.rmtree(path / "objects", ignore_errors=True)
