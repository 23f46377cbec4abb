"""Verifying the commits a SQLite store reads, and quarantining the damaged ones.

A mixin of :class:`~cashet.stores.sqlite.store.SQLiteStore`. Every commit row read is
decoded with :func:`~cashet.hashing.commits.verified_commit` (its body must hash to its
``hash`` column); a row that fails is moved, by ``rowid``, into the ``quarantine`` table
(see :mod:`cashet.stores.quarantine`) in one short write, and the read goes on without it.
A write that fails (a read-only or full disk) is ignored: the row is still skipped.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import suppress
from datetime import datetime
from typing import Any

from cashet.errors import StoreError
from cashet.hashing.commits import Decoder, decode_whole
from cashet.models import Commit
from cashet.stores.quarantine import COMMIT, INDEX, QuarantineEntry, record_json, report
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import Database, tolerant_text
from cashet.stores.sqlite.lean import FunctionBooks, FunctionRowDamaged, fp_key, verified_row
from cashet.stores.sqlite.schema import from_epoch

__all__ = ["DamageMixin", "epoch_or_none"]


def epoch_or_none(value: Any) -> datetime | None:
    """``last_accessed`` from its column; a damaged value reads as never accessed.

    (It is the one field outside a commit's hash: nothing can verify it.)
    """
    if value is None:
        return None
    try:
        return from_epoch(value)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _text(value: Any) -> str:
    """A value found in a damaged row as storable text (bytes that were not UTF-8, read
    as surrogates, become escapes)."""
    text = value if isinstance(value, str) else repr(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class DamageMixin:
    """Verified reads and the quarantine of ``SQLiteStore`` (its ``_db``)."""

    _db: Database
    _books: FunctionBooks

    def _verified(
        self, h: Any, body: Any, fn: Any, result: Any, decode: Decoder = decode_whole
    ) -> Commit:
        """The verified commit of a row (its function row read and checked once per process),
        decoded with ``decode`` (``hashing.commits.Decoder``).

        Raises:
            FunctionRowDamaged: its function row is damaged (not the row's own damage).
            ValueError: the row does not verify.
        """
        return verified_row(h, body, fn, None if fn is None else self._zdict(fn), result, decode)

    def _zdict(self, fn: Any) -> bytes | None:
        """The verified text of function row ``fn`` (``None``: there is none).

        Raises:
            FunctionRowDamaged: it does not hash to its digest.
        """
        zdict = self._books.by_id(fn)
        if zdict is None:
            found = self._db.one(sql.FUNC_BY_ID, (fn,))
            if found is not None:
                zdict = self._books.learn(fn, found[0], found[1], found[2])
        return zdict

    def _row_commit(self, row: Any) -> Commit | None:
        """The verified commit of a ``(body, last_accessed, hash, rowid, fn, result_hash,
        ...)`` row, or
        ``None`` when the row is damaged (it is quarantined) or cannot be verified (its
        function row is damaged: left for ``cashet doctor``)."""
        try:
            commit = self._verified(row[2], row[0], row[4], row[5])
        except FunctionRowDamaged:
            return None
        except ValueError as exc:
            self._quarantine_row(row[3], row[2], row[0], f"the stored commit is damaged: {exc}")
            return None
        commit.last_accessed = epoch_or_none(row[1])
        return commit

    def _rows_commits(self, rows: list[Any]) -> list[Commit]:
        return [c for row in rows if (c := self._row_commit(row)) is not None]

    def _quarantine_row(self, rowid: Any, h: Any, body: Any, reason: str) -> None:
        """Move the commit row ``rowid`` (still holding ``body``) into the quarantine."""
        entry: QuarantineEntry | None = None
        with suppress(StoreError), self._db.transact() as conn, tolerant_text(conn):
            found = conn.execute(sql.ROW_BY_ID, (rowid,)).fetchone()
            if found is None or found[-1] != body:
                return  # deleted or rewritten meanwhile: not ours to move
            record = record_json(sql.COMMIT_COLUMNS, found)
            entry = QuarantineEntry(_text(h), COMMIT, reason, time.time(), record)
            self._insert_entry(conn, entry)
            conn.execute(sql.DELETE_ROW, (rowid,))  # triggers: counters, tags, refcount
        if entry is not None:
            report(self._db.file, entry)

    def _mismatch(self, rowid: Any, template: Commit, fingerprint: str) -> None:
        """A lookup of ``fingerprint`` found ``template``, which does not answer it.

        When the row's own columns contradict its (verified) body, the row is damaged and
        quarantined; when they agree, an index led the lookup astray: that is noted, and
        the commit stays.
        """
        td = template.task_def
        if td.fingerprint == fingerprint and template.is_expired():
            return  # expired between the query and now: no damage
        try:
            row = self._db.one(sql.ROW_BY_ID, (rowid,))
        except StoreError:
            return
        if row is None:
            return
        columns = dict(zip(sql.COMMIT_COLUMNS, row, strict=True))
        if (
            columns["fp"] != fp_key(td.fingerprint)
            or columns["status"] != template.status.value
            or columns["cache"] != int(td.cache)
        ):
            self._quarantine_row(
                rowid,
                template.hash,
                row[-1],
                "its indexed columns contradict its verified content"
                f" (fingerprint key {columns['fp']!r},"
                f" status {columns['status']!r}, cache {columns['cache']!r})",
            )
            return
        entry = QuarantineEntry(
            template.hash,
            INDEX,
            f"a lookup of fingerprint {fingerprint[:24]}... led to this commit of another"
            f" call ({td.fingerprint[:24]}...): an index of {self._db.file} is damaged"
            " (REINDEX repairs it)",
            time.time(),
        )
        with suppress(StoreError), self._db.transact() as conn:
            self._insert_entry(conn, entry)
        report(self._db.file, entry)

    @staticmethod
    def _insert_entry(conn: sqlite3.Connection, entry: QuarantineEntry) -> None:
        fields = (_text(entry.hash), entry.kind, _text(entry.reason), entry.found_at)
        conn.execute(sql.QUARANTINE, (*fields, entry.record))

    def quarantined(self) -> list[QuarantineEntry]:
        """Every damaged entry set aside, oldest first (see :mod:`cashet.stores.quarantine`)."""
        return [
            QuarantineEntry(_text(h), _text(kind), _text(reason), float(found), record)
            for h, kind, reason, found, record in self._db.all(sql.LIST_QUARANTINE, ())
        ]
