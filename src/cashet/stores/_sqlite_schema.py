"""The ``meta.db`` schema of :class:`~cashet.stores.sqlite.SQLiteStore` and its migrations.

``PRAGMA user_version`` holds the schema version. ``MIGRATIONS[i]`` is the list of
statements that takes a database from version ``i`` to ``i + 1``; version 0 is an empty file.
A future schema change appends one entry and never edits an old one.

Derived state lives in the database itself, kept by triggers so that no code path can forget
it: the ``counters`` row (what ``stats()`` reports, O(1)), each blob's ``refcount`` (the
number of commits whose result it is) and the removal of a deleted commit's tags.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1: tuple[str, ...] = (
    # A commit's columns exist for the indexes; ``body`` (commit_to_json) is what is
    # returned. ``last_accessed`` is the one mutable field, so the column, not the body,
    # is the truth for it. Times are UTC epoch seconds.
    """
    CREATE TABLE commits (
        hash          TEXT PRIMARY KEY,
        fingerprint   TEXT NOT NULL,
        func_name     TEXT NOT NULL,
        status        TEXT NOT NULL,
        created_at    REAL NOT NULL,
        expires_at    REAL,
        last_accessed REAL,
        cache         INTEGER NOT NULL,
        result_hash   TEXT,
        result_size   INTEGER NOT NULL,
        parent_hash   TEXT,
        body          TEXT NOT NULL
    )
    """,
    "CREATE INDEX commits_fingerprint ON commits (fingerprint, created_at)",
    "CREATE INDEX commits_func ON commits (func_name, created_at)",
    "CREATE INDEX commits_status ON commits (status, created_at)",
    "CREATE INDEX commits_created ON commits (created_at)",
    # Age and LRU eviction order by last use, which is the creation time until first touch.
    "CREATE INDEX commits_used ON commits (coalesce(last_accessed, created_at))",
    "CREATE INDEX commits_expires ON commits (expires_at) WHERE expires_at IS NOT NULL",
    # Lets a re-created blob row count its references (see the blobs INSERT in sqlite.py).
    "CREATE INDEX commits_result ON commits (result_hash) WHERE result_hash IS NOT NULL",
    """
    CREATE TABLE commit_tags (
        commit_hash TEXT NOT NULL,
        key         TEXT NOT NULL,
        value       TEXT NOT NULL,
        PRIMARY KEY (commit_hash, key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX commit_tags_kv ON commit_tags (key, value)",
    # ``inline`` holds the encoded bytes of a small blob; NULL means objects/ab/cdef….
    # Sizes: ``size`` is the serialized length, ``stored_size`` the encoded one.
    """
    CREATE TABLE blobs (
        hash        TEXT PRIMARY KEY,
        size        INTEGER NOT NULL,
        stored_size INTEGER NOT NULL,
        inline      BLOB,
        refcount    INTEGER NOT NULL,
        created_at  REAL NOT NULL
    )
    """,
    # Garbage collection reads only unreferenced blobs, never all of them.
    "CREATE INDEX blobs_orphans ON blobs (created_at) WHERE refcount = 0",
    """
    CREATE TABLE claims (
        fingerprint TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        host        TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        expires_at  REAL NOT NULL,
        func_name   TEXT NOT NULL,
        claimed_at  REAL NOT NULL
    )
    """,
    "CREATE INDEX claims_expires ON claims (expires_at)",
    """
    CREATE TABLE counters (
        id                INTEGER PRIMARY KEY CHECK (id = 0),
        total_commits     INTEGER NOT NULL DEFAULT 0,
        completed_commits INTEGER NOT NULL DEFAULT 0,
        blob_objects      INTEGER NOT NULL DEFAULT 0,
        blob_bytes        INTEGER NOT NULL DEFAULT 0,
        inline_objects    INTEGER NOT NULL DEFAULT 0,
        inline_bytes      INTEGER NOT NULL DEFAULT 0
    )
    """,
    "INSERT INTO counters (id) VALUES (0)",
    # Triggers fire only for rows really inserted or deleted (INSERT OR IGNORE of a known
    # commit changes nothing), which is exactly when counts and refcounts must move.
    """
    CREATE TRIGGER commits_after_insert AFTER INSERT ON commits BEGIN
        UPDATE counters SET
            total_commits = total_commits + 1,
            completed_commits = completed_commits + (NEW.status = 'completed')
        WHERE id = 0;
        UPDATE blobs SET refcount = refcount + 1 WHERE hash = NEW.result_hash;
    END
    """,
    """
    CREATE TRIGGER commits_after_delete AFTER DELETE ON commits BEGIN
        UPDATE counters SET
            total_commits = total_commits - 1,
            completed_commits = completed_commits - (OLD.status = 'completed')
        WHERE id = 0;
        UPDATE blobs SET refcount = refcount - 1 WHERE hash = OLD.result_hash;
        DELETE FROM commit_tags WHERE commit_hash = OLD.hash;
    END
    """,
    """
    CREATE TRIGGER blobs_after_insert AFTER INSERT ON blobs BEGIN
        UPDATE counters SET
            blob_objects = blob_objects + (NEW.inline IS NULL),
            blob_bytes = blob_bytes + (NEW.inline IS NULL) * NEW.stored_size,
            inline_objects = inline_objects + (NEW.inline IS NOT NULL),
            inline_bytes = inline_bytes + (NEW.inline IS NOT NULL) * NEW.stored_size
        WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER blobs_after_delete AFTER DELETE ON blobs BEGIN
        UPDATE counters SET
            blob_objects = blob_objects - (OLD.inline IS NULL),
            blob_bytes = blob_bytes - (OLD.inline IS NULL) * OLD.stored_size,
            inline_objects = inline_objects - (OLD.inline IS NOT NULL),
            inline_bytes = inline_bytes - (OLD.inline IS NOT NULL) * OLD.stored_size
        WHERE id = 0;
    END
    """,
    """
    CREATE TRIGGER blobs_after_update AFTER UPDATE OF stored_size, inline ON blobs BEGIN
        UPDATE counters SET
            blob_objects = blob_objects - (OLD.inline IS NULL) + (NEW.inline IS NULL),
            blob_bytes = blob_bytes - (OLD.inline IS NULL) * OLD.stored_size
                + (NEW.inline IS NULL) * NEW.stored_size,
            inline_objects = inline_objects - (OLD.inline IS NOT NULL)
                + (NEW.inline IS NOT NULL),
            inline_bytes = inline_bytes - (OLD.inline IS NOT NULL) * OLD.stored_size
                + (NEW.inline IS NOT NULL) * NEW.stored_size
        WHERE id = 0;
    END
    """,
)

#: ``MIGRATIONS[i]`` upgrades a database from ``user_version`` i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)
