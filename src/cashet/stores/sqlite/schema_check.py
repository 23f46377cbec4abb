"""The indexes and triggers of a ``meta.db`` against the ones this version makes.

A flipped bit in ``sqlite_master``'s text can leave the file readable and its integrity
check clean while a trigger no longer compiles (a column name changed: every ``DELETE``
then fails, quarantine and ``rm`` included) or an index indexes something else. The
expected definitions are what the migrations make in an empty database; ``cashet doctor``
lists every index or trigger whose text differs, is missing or is unknown, and its repair
drops and makes them again (in one transaction), before the commits are checked.
"""

from __future__ import annotations

import sqlite3
from functools import cache

from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.lean import register_functions

__all__ = ["SchemaDrift", "expected_objects", "remake", "schema_drift"]

_OBJECTS = (
    "SELECT type, name, sql FROM sqlite_master"
    " WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
)
#: What a drift is: ``(type, name, why)``.
SchemaDrift = tuple[str, str, str]


@cache
def expected_objects() -> dict[tuple[str, str], str]:
    """``(type, name) -> CREATE text`` of every index and trigger this version makes."""
    conn = sqlite3.connect(":memory:")
    try:
        register_functions(conn)
        for step in sql.MIGRATIONS:
            for statement in step:
                conn.execute(statement)
        return {(t, n): s for t, n, s in conn.execute(_OBJECTS).fetchall()}
    finally:
        conn.close()


def schema_drift(conn: sqlite3.Connection) -> list[SchemaDrift]:
    """The indexes and triggers of ``conn``'s database that are not as this version makes
    them: changed, missing, or unknown (a damaged name)."""
    expected = expected_objects()
    found = {(t, n): s for t, n, s in conn.execute(_OBJECTS).fetchall()}
    drift: list[SchemaDrift] = []
    for (kind, name), text in expected.items():
        have = found.get((kind, name))
        if have is None:
            drift.append((kind, name, "missing"))
        elif have != text:
            drift.append((kind, name, "its definition is not the one this version makes"))
    for kind, name in found.keys() - expected.keys():
        drift.append((kind, name, "unknown (not one this version makes)"))
    return drift


def remake(conn: sqlite3.Connection, drift: list[SchemaDrift]) -> None:
    """Drop the drifted objects and make the expected ones again (call in a transaction)."""
    expected = expected_objects()
    for kind, name, _ in drift:
        conn.execute(f'DROP {kind.upper()} IF EXISTS "{name.replace(chr(34), chr(34) * 2)}"')
    for kind, name, _ in drift:
        text = expected.get((kind, name))
        if text is not None:
            conn.execute(text)
