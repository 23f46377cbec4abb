"""Public import path of the PostgreSQL stores (needs ``cashet[postgres]``)."""

from cashet.stores.postgres.async_store import AsyncPostgresStore
from cashet.stores.postgres.store import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore"]
