"""Version 7 of the ``meta.db`` schema (issue 17: the web UI at a million commits), kept
apart from :mod:`cashet.stores.sqlite.schema` (which lists it in ``MIGRATIONS``) for size.

Two pieces of derived state:

* ``commit_inputs``: each commit's ``input_hashes`` (the result blobs of its ``ResultRef``
  arguments), so the commits computed from a result (a lineage's downstream) are an index
  range, not a pass over every commit. Written by the store in the transaction that
  inserts the commit (``lean.LeanRowsMixin._insert_commit``, ``legacy._insert``): a lean
  body (v6) is deflated, so no trigger can read the inputs out of it. Removed by trigger.
* ``function_totals``: per function, the commits recorded (``runs``), their hits and the
  compute seconds the hits saved, so per-function stats read one row per function. Kept by
  triggers on the columns of ``commits`` and ``hits``, like the ``counters`` row.

Main once numbered this step 6 (before the lean rows took that number); a store it
migrated is recognised by :func:`undo_ui_v6` and brought to 7 through the lean step.
"""

from __future__ import annotations

import sqlite3

__all__ = ["INSERT_INPUT", "V7", "undo_ui_v6"]

#: One row of the inputs index (``lean.index_commit``).
INSERT_INPUT = "INSERT OR IGNORE INTO commit_inputs (blob_hash, commit_hash) VALUES (?, ?)"

V7: tuple[str, ...] = (
    """
    CREATE TABLE commit_inputs (
        blob_hash   TEXT NOT NULL,
        commit_hash TEXT NOT NULL,
        PRIMARY KEY (blob_hash, commit_hash)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX commit_inputs_commit ON commit_inputs (commit_hash)",
    """
    CREATE TRIGGER commits_inputs_after_delete AFTER DELETE ON commits BEGIN
        DELETE FROM commit_inputs WHERE commit_hash = OLD.hash;
    END
    """,
    # The backfill reads every commit's content: ``cashet_content`` (lean.content_text,
    # registered for the migration) inflates a lean body, and gives a v5 body as it is.
    "INSERT OR IGNORE INTO commit_inputs (blob_hash, commit_hash)"
    " SELECT j.value, c.hash FROM commits AS c LEFT JOIN funcs AS f ON f.id = c.fn,"
    " json_each(cashet_content(c.body, f.body, c.result_hash), '$.input_hashes') AS j"
    " WHERE j.type = 'text'",
    # Per function: runs (commits), hits and the seconds they saved, so the web UI's stats
    # read one row per function at any store size. A hit row carries its commit's
    # function (a deleted commit's hits are subtracted from the right function whichever
    # trigger runs first).
    "ALTER TABLE hits ADD COLUMN func_name TEXT NOT NULL DEFAULT ''",
    "UPDATE hits SET func_name ="
    " coalesce((SELECT func_name FROM commits WHERE hash = hits.hash), '')",
    """
    CREATE TABLE function_totals (
        func_name TEXT PRIMARY KEY,
        runs      INTEGER NOT NULL DEFAULT 0,
        hits      INTEGER NOT NULL DEFAULT 0,
        saved     REAL NOT NULL DEFAULT 0
    ) WITHOUT ROWID
    """,
    "INSERT INTO function_totals (func_name, runs) SELECT func_name, count(*) FROM commits"
    " GROUP BY func_name",
    "INSERT INTO function_totals (func_name, hits, saved)"
    " SELECT func_name, sum(count), sum(saved) FROM hits WHERE true GROUP BY func_name"
    " ON CONFLICT (func_name) DO UPDATE SET hits = excluded.hits, saved = excluded.saved",
    """
    CREATE TRIGGER commits_functions_after_insert AFTER INSERT ON commits BEGIN
        INSERT INTO function_totals (func_name, runs) VALUES (NEW.func_name, 1)
        ON CONFLICT (func_name) DO UPDATE SET runs = runs + 1;
    END
    """,
    """
    CREATE TRIGGER commits_functions_after_delete AFTER DELETE ON commits BEGIN
        UPDATE function_totals SET runs = runs - 1 WHERE func_name = OLD.func_name;
    END
    """,
    """
    CREATE TRIGGER hits_functions_after_insert AFTER INSERT ON hits BEGIN
        INSERT INTO function_totals (func_name, hits, saved)
        VALUES (NEW.func_name, NEW.count, NEW.saved)
        ON CONFLICT (func_name) DO UPDATE SET hits = hits + NEW.count, saved = saved + NEW.saved;
    END
    """,
    """
    CREATE TRIGGER hits_functions_after_update AFTER UPDATE ON hits BEGIN
        UPDATE function_totals SET hits = hits + NEW.count - OLD.count,
            saved = saved + NEW.saved - OLD.saved
        WHERE func_name = NEW.func_name;
    END
    """,
    """
    CREATE TRIGGER hits_functions_after_delete AFTER DELETE ON hits BEGIN
        UPDATE function_totals SET hits = hits - OLD.count, saved = saved - OLD.saved
        WHERE func_name = OLD.func_name;
    END
    """,
)

_UI_V6_TRIGGERS = (
    "commits_inputs_after_insert",
    "commits_inputs_after_delete",
    "commits_functions_after_insert",
    "commits_functions_after_delete",
    "hits_functions_after_insert",
    "hits_functions_after_update",
    "hits_functions_after_delete",
)


def undo_ui_v6(conn: sqlite3.Connection, version: int) -> int:
    """The version to migrate ``conn`` from: a store at version 6 without ``funcs`` was
    migrated by the unreleased main whose step 6 was this module's; that step is undone
    (its state is derived: the migration rebuilds it) and the store is taken as version 5.
    Runs inside the migration's transaction."""
    if version != 6 or conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'funcs'"
    ).fetchone():
        return version
    for trigger in _UI_V6_TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute("DROP TABLE IF EXISTS commit_inputs")
    conn.execute("DROP TABLE IF EXISTS function_totals")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(hits)")}
    if "func_name" in columns:
        conn.execute("ALTER TABLE hits DROP COLUMN func_name")
    return 5
