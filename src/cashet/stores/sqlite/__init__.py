"""The embedded default store: ``meta.db`` (SQLite, WAL) plus ``objects/`` blob files.

Public path: :mod:`cashet.store` (``SQLiteStore``, ``AsyncSQLiteStore``).
"""
