"""Commits page by page for :class:`~cashet.stores.sqlite.store.SQLiteStore` (the
:class:`~cashet.protocols.CommitPages` capability: ``Client.log_page``, the web UI's list).

A page is one range of the index the filters choose (as ``list_commits``), started at the
cursor ``(created_at, rowid)`` of the previous page's last row: any page costs what the
first does, however deep. A text search reads the rows in that order and keeps those whose
stored record contains the text, reading at most ``window`` rows per page, so a rare text
costs a bounded time per page and the cursor continues the search. A whole JSON body (v5
rows, caller-named commits) is matched in SQLite (``LIKE``: ASCII letters in any case); a
lean body (v6, deflated against its function row) is inflated here and its own text
matched the same way, unverified: a match is then read whole and verified like any commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cashet.models import Commit, TaskStatus
from cashet.protocols import CommitPage, TagQuery
from cashet.stores.hits import HitRecorder
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import DB_ERRORS, Database
from cashet.stores.sqlite.lean import FunctionRowDamaged, dictionary, lean_holds

__all__ = ["PagesMixin", "parse_cursor"]

# Kept by triggers (schema version 7): one row per function.
_TOTALS = (
    "SELECT func_name, runs, hits, saved FROM function_totals WHERE runs > 0 OR hits > 0"
    " ORDER BY func_name"
)

_BY_ROWID = f"{sql.SELECT_COMMIT} WHERE rowid = ?"
# The commits that took a result as an input, oldest first (the lineage's downstream).
_BY_INPUT = (
    f"{sql.SELECT_COMMIT} WHERE hash IN"
    " (SELECT commit_hash FROM commit_inputs WHERE blob_hash = ?)"
    " ORDER BY created_at, rowid LIMIT ?"
)

#: Rows read per query while searching for text.
_BATCH = 2000


def parse_cursor(cursor: str | None) -> tuple[float, int] | None:
    """``"<created_at>_<rowid>"`` -> the tuple (``ValueError`` for anything else)."""
    if cursor is None:
        return None
    at, sep, rowid = cursor.partition("_")
    try:
        if not sep:
            raise ValueError
        return float(at), int(rowid)
    except ValueError:
        raise ValueError(f"{cursor!r} is not a page cursor of this store") from None


class PagesMixin:
    """``page_commits`` over the ``commits`` and ``commit_tags`` indexes; ``function_totals``."""

    _db: Database
    _hits: HitRecorder
    _rows_commits: Callable[[list[Any]], list[Commit]]  # DamageMixin's
    _zdict: Callable[[Any], bytes | None]  # DamageMixin's

    def find_by_input(self, blob_hash: str, limit: int = 200) -> list[Commit]:
        """Return the commits that took this blob as an input, oldest first (indexed)."""
        return self._rows_commits(self._db.all(_BY_INPUT, (blob_hash, limit)))

    def function_totals(self) -> list[tuple[str, int, int, float]]:
        """``(function, runs, hits, seconds saved)`` per function: totals the database keeps
        (schema version 7), one row per function whatever the number of commits."""
        self._hits.flush()  # this process's hits count too
        return [
            (str(name), int(runs), int(hits), float(saved))
            for name, runs, hits, saved in self._db.all(_TOTALS, ())
        ]

    def page_commits(
        self,
        func_name: str | None,
        status: TaskStatus | None,
        tags: TagQuery | None,
        text: str | None,
        cursor: str | None,
        limit: int,
        window: int,
    ) -> CommitPage:
        """Return up to ``limit`` commits older than ``cursor``, newest first (see
        :class:`~cashet.protocols.CommitPages`).

        Raises:
            ValueError: ``cursor`` is not one this store made.
        """
        before = parse_cursor(cursor)
        needle = (text or "").lower()
        raw = needle.encode()
        zdicts: dict[Any, bytes | None] = {}
        # Searching, a row comes back with whether its whole JSON body matches (LIKE, in
        # SQLite: that body is not copied out), or else its lean body; a match is then
        # read whole.
        columns = "c.body, c.last_accessed, c.hash, c.rowid, c.fn, c.result_hash, c.created_at"
        if needle:
            columns = (
                "CASE WHEN c.fn IS NULL THEN NULL ELSE c.body END, NULL, c.hash, c.rowid,"
                " c.fn, c.result_hash, c.created_at,"
                " c.fn IS NULL AND c.body LIKE ? ESCAPE '\\'"
            )
        want = limit if not needle else min(_BATCH, window)
        found: list[Commit] = []
        scanned = 0
        while True:
            try:
                with self._db.gated():
                    driver = sql.choose_driver(self._db.conn(), func_name, status, tags)
                query, params = sql.select_commits(
                    columns, func_name, status, tags, driver, want, before
                )
            except DB_ERRORS as exc:
                raise self._db.error(exc) from exc
            if needle:
                params.insert(0, _like(needle))
            rows = self._db.all(query, params)
            scanned += len(rows)
            for row in rows:
                if len(found) == limit:
                    break
                before = (row[6], row[3])
                if not needle:
                    found.extend(self._rows_commits([row]))
                elif row[7] or row[2].startswith(needle) or self._lean_has(row, raw, zdicts):
                    whole = self._db.all(_BY_ROWID, (row[3],))
                    found.extend(self._rows_commits(whole))
            if len(found) == limit:
                return CommitPage(found, _cursor(before), scanned)
            if len(rows) < want:
                return CommitPage(found, None, scanned)
            if needle and scanned >= window:
                return CommitPage(found, _cursor(before), scanned, partial=True)
            want = min(_BATCH, window - scanned) if needle else limit - len(found)

    def _lean_has(self, row: Any, needle: bytes, zdicts: dict[Any, bytes | None]) -> bool:
        """Whether the lean body of a ``(body, _, hash, rowid, fn, result_hash, ...)`` row
        holds ``needle`` (``zdicts``: the function rows read so far for this page);
        ``False`` for a row that cannot be read."""
        fn = row[4]
        if fn is None:
            return False  # a whole JSON body: LIKE answered
        if fn not in zdicts:
            try:
                zdicts[fn] = self._zdict(fn)
            except FunctionRowDamaged:
                zdicts[fn] = None
        zdict = zdicts[fn]
        return zdict is not None and lean_holds(row[0], dictionary(zdict, row[5]), needle)


def _like(needle: str) -> str:
    """A LIKE pattern for "contains ``needle``" (``%``, ``_`` and ``\\`` taken literally)."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _cursor(before: tuple[float, int] | None) -> str | None:
    return None if before is None else f"{before[0]!r}_{before[1]}"
