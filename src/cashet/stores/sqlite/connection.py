"""The ``meta.db`` connections of one SQLite store: one per thread, safe across ``fork``.

:class:`Database` opens a connection per thread (and per process after ``fork``) in WAL
mode, runs every write as one short ``BEGIN IMMEDIATE`` transaction (:meth:`~Database.
transact`), retries the ``BEGIN`` that SQLite refuses at once, migrates the schema on open
and translates ``sqlite3`` errors into :class:`~cashet.errors.StoreError`. It knows nothing
of commits or blobs.

Fork safety: every call into SQLite runs inside :data:`cashet._process.fork_gate`, so a
fork never happens while a thread is inside SQLite (its mutexes would stay held in the
child, which then hangs in ``sqlite3_open``), and just before a fork, with the gate taken,
every connection of the process is closed: the child inherits no SQLite connection nor
the per-file lock bookkeeping SQLite keeps for them, and both sides reopen on next use.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import quote

from cashet import _process
from cashet.errors import StoreError
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.lean import register_functions
from cashet.stores.sqlite.schema_v7 import undo_ui_v6

__all__ = ["DB_ERRORS", "Database", "readonly_uri", "tolerant_text"]

# Guards connection bookkeeping; taken on the slow path only (connect, close).
_registry_lock = threading.Lock()
# Connections a forked child inherited from its parent. SQLite forbids using them in the
# child, and closing them there could drop locks or checkpoint the WAL under the parent,
# so they are kept referenced (the garbage collector would close them) and never touched.
_inherited: list[sqlite3.Connection] = []


# Every open Database, so that a forked child can drop their per-thread connections.
_databases: weakref.WeakSet[Database] = weakref.WeakSet()


@_process.before_fork
def _close_connections_before_fork() -> None:
    # The gate is taken: no thread of ours is inside SQLite, so every connection is idle.
    # Their threads' next calls reopen (dropping the thread-locals forgets the old ones).
    for db in list(_databases):
        db._local = threading.local()
        conns, db._conns = db._conns, []
        for _, conn in conns:
            with suppress(sqlite3.Error):
                conn.close()


@_process.after_fork_in_child
def _forget_connections_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()  # another thread may have held it during the fork
    # Only the forking thread lives on in the child: dropping the thread-locals makes its
    # next use open a fresh connection (the parent's are set aside by _disown_after_fork),
    # so the hot path needs no pid check.
    for db in list(_databases):
        db._local = threading.local()


#: What a query may raise: SQLite's errors, and the UnicodeDecodeError of an error message
#: that quotes damaged schema text (a flipped bit in ``sqlite_master``).
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, UnicodeDecodeError)


def _tolerant_text(data: bytes) -> str:
    """Text that is not UTF-8 (a damaged row), kept readable: bad bytes as surrogates."""
    return data.decode("utf-8", "surrogateescape")


def _undecodable(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "decode to UTF-8" in str(exc)


@contextmanager
def tolerant_text(conn: sqlite3.Connection) -> Iterator[None]:
    """Read text columns that are not valid UTF-8 (damage) instead of failing the query.

    Only on the rare path: the default decoding is C code, this one a Python call per value.
    """
    conn.text_factory = _tolerant_text
    try:
        yield
    finally:
        conn.text_factory = str


def readonly_uri(db_file: str) -> str:
    """The URI that opens ``db_file`` read-only, without ever writing beside it.

    ``mode=ro`` reads a WAL database when its ``-shm`` and ``-wal`` files exist or its
    directory is writable (SQLite creates them). In a directory nobody may write (a
    read-only mount, ``chmod a-w``) where they do not exist, SQLite cannot open the WAL
    index at all, and ``immutable=1`` is the way in: no locks, no ``-shm``. That is safe
    there because no writer can change the database either: a writer needs those files.
    """
    folder = os.path.dirname(db_file) or "."
    uri = f"file:{quote(os.path.abspath(db_file))}?mode=ro"
    if not os.access(folder, os.W_OK) and not all(
        os.path.exists(db_file + suffix) for suffix in ("-wal", "-shm")
    ):
        uri += "&immutable=1"
    return uri


def _is_busy(exc: Exception) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


class Database:
    """The connections to one ``meta.db`` file.

    Args:
        db_file: the database file (created, and migrated to the current schema, on open).
        busy_timeout: seconds a write waits for another writer before ``StoreError``.
        owner: how errors name the store (its ``repr``).
        readonly: open it read-only (:func:`readonly_uri`): nothing is created, migrated
            or written; a write raises ``StoreError``.

    Raises:
        StoreError: the file cannot be opened, or was written by a newer cashet (or, read
            only, by an older one: it cannot be upgraded).
    """

    def __init__(
        self, db_file: str, busy_timeout: float, owner: str, *, readonly: bool = False
    ) -> None:
        self.file = db_file
        self.readonly = readonly
        self.busy_timeout = busy_timeout
        self._owner = owner
        self._local = threading.local()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_pid = _process.current_pid()
        self._closed = False
        _databases.add(self)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def gated(self) -> _process.ForkGate:
        """The fork gate: hold it (``with db.gated():``) around any direct use of
        :meth:`conn`; the methods below take it themselves."""
        return _process.fork_gate

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after ``fork``).

        Use it only inside :meth:`gated` (or the methods below, which are).
        """
        try:
            conn: sqlite3.Connection = self._local.conn
            return conn
        except AttributeError:
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        with _registry_lock:
            if self._closed:
                raise StoreError(f"{self._owner} is closed")
            self._disown_after_fork()
            # Close what threads that have ended left behind, so a store used from many
            # short-lived threads does not pile up open files.
            live = []
            for thread, old in self._conns:
                if thread.is_alive():
                    live.append((thread, old))
                else:
                    with suppress(sqlite3.Error):
                        old.close()
            try:
                # check_same_thread=False only so that close() can close every thread's
                # connection; each connection is still used by its own thread alone.
                conn = sqlite3.connect(
                    readonly_uri(self.file) if self.readonly else self.file,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                    uri=self.readonly,
                )
            except DB_ERRORS as exc:
                raise StoreError(f"cannot open {self.file}: {exc}") from exc
            try:
                # WAL keeps the database consistent with NORMAL; a power cut may only lose
                # the last commits, which a cache can recompute.
                conn.execute("PRAGMA synchronous = NORMAL")
                # No memory map (mmap_size 0, the default): it saved ~10 µs of a random-key
                # hit, but a meta.db changed under a mapping (damage, a restore, a bit flip
                # the doctor is to find) crashes the process instead of failing a read.
            except DB_ERRORS as exc:
                conn.close()
                raise self.error(exc) from exc
            live.append((threading.current_thread(), conn))
            self._conns = live
        self._local.conn = conn
        return conn

    def _disown_after_fork(self) -> None:
        """In a forked child, set the parent's connections aside (called under the lock)."""
        if self._conns_pid != _process.current_pid():
            _inherited.extend(conn for _, conn in self._conns)
            self._conns, self._conns_pid = [], _process.current_pid()

    def error(self, exc: Exception) -> StoreError:
        """The ``StoreError`` that reports ``exc``."""
        return StoreError(f"{self.file}: {exc}")

    def one(self, query: str, params: tuple[Any, ...]) -> Any:
        """The first row of ``query`` (autocommit read), or ``None``.

        Text that is not UTF-8 (damage) is read with the bad bytes as surrogates, for the
        caller to find it damaged, instead of failing the query.
        """
        with _process.fork_gate:
            try:
                return self.conn().execute(query, params).fetchone()
            except DB_ERRORS as exc:
                if not _undecodable(exc):
                    raise self.error(exc) from exc
            rows = self._tolerant(query, params)
        return rows[0] if rows else None

    def all(self, query: str, params: tuple[Any, ...] | list[Any]) -> list[Any]:
        """Every row of ``query`` (autocommit read); text as in :meth:`one`."""
        with _process.fork_gate:
            try:
                return self.conn().execute(query, params).fetchall()
            except DB_ERRORS as exc:
                if not _undecodable(exc):
                    raise self.error(exc) from exc
            return self._tolerant(query, params)

    def _tolerant(self, query: str, params: tuple[Any, ...] | list[Any]) -> list[Any]:
        conn = self.conn()
        try:
            with tolerant_text(conn):
                return conn.execute(query, params).fetchall()
        except DB_ERRORS as exc:
            raise self.error(exc) from exc

    def run(self, query: str, params: tuple[Any, ...]) -> int:
        """Run one autocommit write; return the number of rows it changed."""
        with _process.fork_gate:
            try:
                return self.conn().execute(query, params).rowcount
            except DB_ERRORS as exc:
                raise self.error(exc) from exc

    def _begin(self, conn: sqlite3.Connection) -> None:
        # WAL lets readers run beside the writer, but writers still serialize on one lock.
        # The busy handler (connect's timeout) waits for it in most cases, yet SQLite
        # returns SQLITE_BUSY at once in some (another connection recovering the WAL index,
        # a lock upgrade that would deadlock), so BEGIN is retried here with backoff.
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except DB_ERRORS as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self.error(exc) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    @contextmanager
    def transact(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: commit, or roll back.

        A fork waits for the block to end (the fork gate is held throughout).
        """
        with _process.fork_gate:
            conn = self.conn()
            self._begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, DB_ERRORS):
                    raise self.error(exc) from exc
                raise

    def _migrate(self) -> None:
        with _process.fork_gate:
            self._migrate_gated()

    def _migrate_gated(self) -> None:
        conn = self.conn()
        version = self.one("PRAGMA user_version", ())[0]
        if version == sql.SCHEMA_VERSION:
            return
        self._check_version(version)
        if self.readonly:
            raise StoreError(
                f"{self.file} has schema version {version}, older than the"
                f" {sql.SCHEMA_VERSION} this cashet reads, and it is opened read-only: open"
                " it once where it can be written to upgrade it"
            )
        try:
            # Persistent in the file; it cannot change inside a transaction.
            conn.execute("PRAGMA journal_mode = WAL")
        except DB_ERRORS as exc:
            raise self.error(exc) from exc
        with self.transact():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            register_functions(conn)  # what the migrations call
            version = undo_ui_v6(conn, version)  # main's unreleased step 6, renumbered
            for step in sql.MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {sql.SCHEMA_VERSION}")

    def _check_version(self, version: int) -> None:
        if version > sql.SCHEMA_VERSION:
            raise StoreError(
                f"{self.file} has schema version {version}, newer than the "
                f"{sql.SCHEMA_VERSION} this cashet knows: upgrade cashet to open it"
            )

    def close(self) -> None:
        """Close every connection, in all threads. Idempotent; any later use raises.

        Alone in the gate: a connection another thread is using (the hit flusher's, a
        batch thread's) is never closed under it (SQLite would crash the process)."""
        with _process.fork_gate.exclusive():
            with _registry_lock:
                self._closed = True
                self._disown_after_fork()
                conns, self._conns = self._conns, []
                self._local = threading.local()
            for _, conn in conns:
                with suppress(sqlite3.Error):
                    conn.close()
