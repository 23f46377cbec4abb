"""Version 8 of the ``meta.db`` schema (issue 18: fewer bytes and fewer pages written per
commit), kept apart from :mod:`cashet.stores.sqlite.schema` (which lists it in
``MIGRATIONS``) for size.

Two changes. The blob index becomes a ``WITHOUT ROWID`` table keyed by the blob's hash:
a rowid table with a text primary key keeps every hash twice (in the row and in the key's
own index), ~83 bytes per blob, and every new blob wrote two b-tree pages, not one. Nothing
reads a blob row by its rowid (``cashet doctor`` names a row by its hash's bytes: see
:data:`BLOB_KEY`). The unreferenced-blob index, the blob triggers and the commit triggers
that name ``blobs`` are made again around the swap (a trigger must not name a missing
table while a table is renamed). A row without a hash (only damage makes one: the key
could not be NULL before either by intent) is left behind. And a tiny result is kept in
its commit's row (``result_data``: :mod:`~cashet.stores.sqlite.tiny`), not in a blob row;
the commit triggers count those bytes.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BLOB_BY_KEY", "BLOB_KEY", "TINY_BYTES", "TINY_OBJECTS", "v8"]


def _rows_of(hash_sql: str, row: str | None = None, what: str = "1") -> str:
    """``what`` of the commit rows other than ``row`` holding the bytes of result
    ``hash_sql`` (by the result index)."""
    other = "" if row is None else f" AND o.rowid <> {row}.rowid"
    return (
        f"SELECT {what} FROM commits o WHERE substr(o.result_hash, 1, 16)"
        f" = substr({hash_sql}, 1, 16) AND +o.result_hash = {hash_sql}"
        f" AND o.result_data IS NOT NULL{other}"
    )


def _shadow(event: str, row: str, sign: str) -> str:
    """The trigger of a blob row inserted (``NEW``, ``-``) or deleted (``OLD``, ``+``)
    while commit rows hold the same bytes: the one object passes to the row, or back."""
    h = f"{row}.hash"
    length = f"{_rows_of(h, None, 'length(o.result_data)')} LIMIT 1"
    return f"""
        CREATE TRIGGER blobs_shadow_after_{event.lower()} AFTER {event} ON blobs
        WHEN EXISTS ({_rows_of(h)}) BEGIN
            UPDATE counters SET
                inline_objects = inline_objects {sign} 1,
                inline_bytes = inline_bytes {sign} ({length})
            WHERE id = 0;
        END
        """


def _lone(row: str) -> str:
    """Whether commit row ``row`` (``NEW``/``OLD``) is the only holder of its result's
    bytes: no blob row of that hash, no other commit row holding them. Content-addressed
    counting: a result is one stored object however many commits keep a copy. A ``CASE``,
    so that the probes run only for a row holding bytes and in this order (an ``AND``
    here runs its subqueries anyway: a result shared by many commits made every insert
    scan them all)."""
    h = f"{row}.result_hash"
    return (
        f"CASE WHEN {row}.result_data IS NULL THEN 0"
        f" WHEN EXISTS (SELECT 1 FROM blobs WHERE hash = {h}) THEN 0"
        f" WHEN EXISTS ({_rows_of(h, row)}) THEN 0 ELSE 1 END"
    )


def _lone_bytes(row: str) -> str:
    """The bytes of commit row ``row``'s result when it is their only holder, else 0."""
    return f"({_lone(row)}) * coalesce(length({row}.result_data), 0)"


_TINY_LONE = (
    "SELECT max(length(result_data)) AS n FROM commits c WHERE result_data IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = c.result_hash)"
    " GROUP BY result_hash"
)


#: The inline objects, and their bytes, of tiny results only commit rows hold (one per
#: result hash): what the triggers count, for ``cashet doctor``'s recount.
TINY_OBJECTS = f"SELECT count(*) FROM ({_TINY_LONE})"
TINY_BYTES = f"SELECT coalesce(sum(n), 0) FROM ({_TINY_LONE})"

#: How ``cashet doctor`` names a blob row (its hash's bytes, readable whatever the damage:
#: text that is not UTF-8 cannot be a parameter), and the row of such a name ``?1`` (two
#: probes of the key: a text hash, or a damaged one stored as a BLOB).
BLOB_KEY = "CAST(hash AS BLOB)"
BLOB_BY_KEY = "(hash = CAST(?1 AS TEXT) OR hash = ?1)"

#: The triggers of earlier versions that the swap drops and makes again.
_TRIGGERS = (
    "commits_after_insert",
    "commits_after_delete",
    "blobs_after_insert",
    "blobs_after_delete",
    "blobs_after_update",
)


def v8(trigger: Callable[[str], str]) -> tuple[str, ...]:
    """The statements of version 8; ``trigger(name)`` is the statement that made trigger
    ``name`` in an earlier version."""
    return (
        *(f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS),
        """
        CREATE TABLE blobs_v8 (
            hash        TEXT NOT NULL PRIMARY KEY,
            size        INTEGER NOT NULL,
            stored_size INTEGER NOT NULL,
            inline      BLOB,
            refcount    INTEGER NOT NULL,
            created_at  REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "INSERT INTO blobs_v8 (hash, size, stored_size, inline, refcount, created_at)"
        " SELECT hash, size, stored_size, inline, refcount, created_at FROM blobs"
        " WHERE hash IS NOT NULL",
        "DROP TABLE blobs",
        "ALTER TABLE blobs_v8 RENAME TO blobs",
        "CREATE INDEX blobs_orphans ON blobs (created_at) WHERE refcount = 0",
        *(trigger(name) for name in _TRIGGERS[2:]),
        # A tiny result kept in its commit's row (stores/sqlite/tiny.py): an object is
        # counted once per result hash, wherever its bytes are (see _lone / _rows_of).
        "ALTER TABLE commits ADD COLUMN result_data BLOB",
        f"""
        CREATE TRIGGER commits_after_insert AFTER INSERT ON commits BEGIN
            UPDATE counters SET
                total_commits = total_commits + 1,
                completed_commits = completed_commits + (NEW.status = 'completed'),
                inline_objects = inline_objects + ({_lone("NEW")}),
                inline_bytes = inline_bytes + {_lone_bytes("NEW")}
            WHERE id = 0;
            UPDATE blobs SET refcount = refcount + 1 WHERE hash = NEW.result_hash;
        END
        """,
        f"""
        CREATE TRIGGER commits_after_delete AFTER DELETE ON commits BEGIN
            UPDATE counters SET
                total_commits = total_commits - 1,
                completed_commits = completed_commits - (OLD.status = 'completed'),
                inline_objects = inline_objects - ({_lone("OLD")}),
                inline_bytes = inline_bytes - {_lone_bytes("OLD")}
            WHERE id = 0;
            UPDATE blobs SET refcount = refcount - 1 WHERE hash = OLD.result_hash;
            DELETE FROM commit_tags WHERE commit_hash = OLD.hash;
        END
        """,
        f"""
        CREATE TRIGGER commits_data_after_update AFTER UPDATE OF result_data ON commits BEGIN
            UPDATE counters SET
                inline_objects = inline_objects - ({_lone("OLD")}) + ({_lone("NEW")}),
                inline_bytes = inline_bytes - {_lone_bytes("OLD")}
                    + {_lone_bytes("NEW")}
            WHERE id = 0;
        END
        """,
        # A blob row of a hash some commit rows also hold: the one object is the row's now
        # (and theirs again once the row goes).
        _shadow("INSERT", "NEW", "-"),
        _shadow("DELETE", "OLD", "+"),
    )
