"""The embedded default store: ``meta.db`` (SQLite, WAL) plus ``objects/`` blob files.

``store`` (``SQLiteStore``: blobs, commits, the hit path) with its mixins ``claims``
(leases) and ``removal`` (delete, evict); ``connection`` (per-thread connections,
transactions, migration); ``files`` (blob files); ``schema`` (tables, triggers, SQL);
``async_store`` (``AsyncSQLiteStore``: the same store in a worker thread).

Public path: :mod:`cashet.store` (``SQLiteStore``, ``AsyncSQLiteStore``).
"""
