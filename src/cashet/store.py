"""Public import path of the SQLite stores: ``from cashet.store import SQLiteStore``."""

from __future__ import annotations

from cashet.stores.sqlite.async_store import AsyncSQLiteStore
from cashet.stores.sqlite.store import SQLiteStore

__all__ = ["AsyncSQLiteStore", "SQLiteStore"]
