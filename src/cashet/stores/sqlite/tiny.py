"""Tiny results kept in their commit's row (schema v8, issue 18).

A result whose encoded form is at most :data:`TINY_MAX` bytes (and under the store's
``inline_threshold``) is written by ``put_result`` into the ``result_data`` column of its
commit's row, not into a ``blobs`` row: a blob row and its key cost ~115 bytes and a b-tree
page written per miss, for the few bytes of ``f(x) = x + 1``'s answer. The bytes are read
like any blob's, verified against the commit's ``result_hash`` before use (the hit query
returns them in place of a blob row's inline bytes; ``get_blob`` falls back to them), and
they go with their commit: nothing to count, nothing to collect. A blob row of the same
hash (``put_blob``, another commit's larger threshold) may exist beside them; its reference
count counts every commit of that result, as before. The ``counters`` row counts such
bytes as inline objects, one per commit row holding them (triggers, schema v8).
"""

from __future__ import annotations

from cashet.stores.sqlite.schema import RESULT_IS

__all__ = [
    "HELD_DATA",
    "COMMIT_DATA",
    "FORGET_DATA",
    "INSERT_COMMIT_DATA",
    "TINY_MAX",
    "in_row",
]

#: The largest encoded result kept in its commit's row.
TINY_MAX = 64

#: ``schema.INSERT_COMMIT`` with the result's encoded bytes (the 14th parameter).
INSERT_COMMIT_DATA = (
    "INSERT OR IGNORE INTO commits (hash, fp, func_name, status, created_at,"
    " expires_at, last_accessed, cache, result_hash, result_size, parent_hash, fn, body,"
    " result_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The bytes of blob ``?1`` kept in a commit row (by the result index).
COMMIT_DATA = (
    f"SELECT result_data FROM commits WHERE {RESULT_IS} AND result_data IS NOT NULL LIMIT 1"
)
#: Forget the bytes of blob ``?1`` found damaged: its commits are then misses (recomputed).
FORGET_DATA = (
    f"UPDATE commits SET result_data = NULL WHERE {RESULT_IS} AND result_data IS NOT NULL"
)
#: Every commit row holding its result's bytes (``cashet doctor`` verifies them).
HELD_DATA = "SELECT rowid, result_hash, result_data FROM commits WHERE result_data IS NOT NULL"


def in_row(encoded: bytes, inline_threshold: int) -> bool:
    """Whether a result encoded as ``encoded`` is kept in its commit's row."""
    return len(encoded) <= TINY_MAX and len(encoded) < inline_threshold
