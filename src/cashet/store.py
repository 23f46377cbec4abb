"""Public import path of the SQLite store: ``from cashet.store import SQLiteStore``."""

from __future__ import annotations

from cashet.stores.sqlite import SQLiteStore

__all__ = ["SQLiteStore"]
