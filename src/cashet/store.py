"""Public import path of the SQLite stores: ``from cashet.store import SQLiteStore``."""

from __future__ import annotations

from cashet.stores.async_sqlite import AsyncSQLiteStore
from cashet.stores.sqlite import SQLiteStore

__all__ = ["AsyncSQLiteStore", "SQLiteStore"]
