"""Version 6 of the ``meta.db`` schema (issue 17: the web UI at a million commits), kept
apart from :mod:`cashet.stores.sqlite.schema` (which lists it in ``MIGRATIONS``) for size.

Two pieces of derived state, kept by triggers like the ``counters`` row:

* ``commit_inputs``: each commit's ``input_hashes`` (the result blobs of its ``ResultRef``
  arguments), so the commits computed from a result (a lineage's downstream) are an index
  range, not a pass over every commit;
* ``function_totals``: per function, the commits recorded (``runs``), their hits and the
  compute seconds the hits saved, so per-function stats read one row per function.
"""

from __future__ import annotations

__all__ = ["V6"]

# Version 6 (issue 17: the web UI at a million commits): an index of inputs, and totals per
# function. Inputs: a
# commit's ``input_hashes`` (the result blobs of its ``ResultRef`` arguments) are listed
# here, so "which commits took this result as an input" is an index range instead of a pass
# over every commit. Kept by triggers from the stored body (every insert path, legacy
# migration and archive import included); a commit without inputs, almost all of them, costs
# the trigger one ``instr`` of its body and no write.
V6: tuple[str, ...] = (
    """
    CREATE TABLE commit_inputs (
        blob_hash   TEXT NOT NULL,
        commit_hash TEXT NOT NULL,
        PRIMARY KEY (blob_hash, commit_hash)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX commit_inputs_commit ON commit_inputs (commit_hash)",
    """
    CREATE TRIGGER commits_inputs_after_insert AFTER INSERT ON commits
    WHEN instr(NEW.body, '"input_hashes":[]') = 0 AND json_valid(NEW.body)
    BEGIN
        INSERT OR IGNORE INTO commit_inputs (blob_hash, commit_hash)
        SELECT value, NEW.hash FROM json_each(NEW.body, '$.input_hashes')
        WHERE type = 'text';
    END
    """,
    """
    CREATE TRIGGER commits_inputs_after_delete AFTER DELETE ON commits BEGIN
        DELETE FROM commit_inputs WHERE commit_hash = OLD.hash;
    END
    """,
    "INSERT OR IGNORE INTO commit_inputs (blob_hash, commit_hash)"
    " SELECT j.value, c.hash FROM commits AS c, json_each(c.body, '$.input_hashes') AS j"
    " WHERE instr(c.body, '\"input_hashes\":[]') = 0 AND json_valid(c.body)"
    " AND j.type = 'text'",
    # Per function: runs (commits), hits and the seconds they saved, kept by triggers like
    # the counters row, so the web UI's stats read one row per function at any store size.
    # A hit row carries its commit's function (a deleted commit's hits are subtracted from
    # the right function whichever trigger runs first).
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
