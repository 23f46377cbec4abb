"""The PostgreSQL stores: ``PostgresStore`` and ``AsyncPostgresStore`` (``cashet[postgres]``).

Import them from :mod:`cashet.postgres_store`; nothing here imports psycopg until a store
module is imported.
"""
