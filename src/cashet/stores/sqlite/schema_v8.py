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

__all__ = ["BLOB_BY_KEY", "BLOB_KEY", "v8"]

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
        # A tiny result kept in its commit's row (stores/sqlite/tiny.py): counted as an
        # inline object of its own, one per row holding it.
        "ALTER TABLE commits ADD COLUMN result_data BLOB",
        """
        CREATE TRIGGER commits_after_insert AFTER INSERT ON commits BEGIN
            UPDATE counters SET
                total_commits = total_commits + 1,
                completed_commits = completed_commits + (NEW.status = 'completed'),
                inline_objects = inline_objects + (NEW.result_data IS NOT NULL),
                inline_bytes = inline_bytes + coalesce(length(NEW.result_data), 0)
            WHERE id = 0;
            UPDATE blobs SET refcount = refcount + 1 WHERE hash = NEW.result_hash;
        END
        """,
        """
        CREATE TRIGGER commits_after_delete AFTER DELETE ON commits BEGIN
            UPDATE counters SET
                total_commits = total_commits - 1,
                completed_commits = completed_commits - (OLD.status = 'completed'),
                inline_objects = inline_objects - (OLD.result_data IS NOT NULL),
                inline_bytes = inline_bytes - coalesce(length(OLD.result_data), 0)
            WHERE id = 0;
            UPDATE blobs SET refcount = refcount - 1 WHERE hash = OLD.result_hash;
            DELETE FROM commit_tags WHERE commit_hash = OLD.hash;
        END
        """,
        """
        CREATE TRIGGER commits_data_after_update AFTER UPDATE OF result_data ON commits BEGIN
            UPDATE counters SET
                inline_objects = inline_objects - (OLD.result_data IS NOT NULL)
                    + (NEW.result_data IS NOT NULL),
                inline_bytes = inline_bytes - coalesce(length(OLD.result_data), 0)
                    + coalesce(length(NEW.result_data), 0)
            WHERE id = 0;
        END
        """,
    )
