"""A real PostgreSQL for the tests: the session fixture ``postgres_dsn``.

The server at 127.0.0.1:5432 (trust auth, user ``postgres`` or ``root``), or the one
``$CASHET_TEST_POSTGRES_DSN`` names. Each test run creates a database of its own,
``cashet_test_<random>``, and drops it at the end; each store in it lives in a fresh schema
(:func:`fresh_schema`), dropped after its test. Without a server the tests that need one are
skipped with the reason, except in CI (``CI=true``), where that fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

SERVER = "postgresql://{user}@127.0.0.1:5432/{db}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _admin_dsn() -> str | None:
    """A DSN of the server's maintenance database that answers, or ``None``."""
    import psycopg

    named = os.environ.get("CASHET_TEST_POSTGRES_DSN")
    candidates = (
        [named] if named else [SERVER.format(user=u, db="postgres") for u in ("postgres", "root")]
    )
    for dsn in candidates:
        try:
            with psycopg.connect(dsn, connect_timeout=3):
                return dsn
        except psycopg.Error:
            continue
    return None


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a database made for this test run (dropped at its end)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - dev installs it
        _unavailable(f"psycopg is not installed: {exc}")
        raise
    admin = _admin_dsn()
    if admin is None:
        _unavailable("no PostgreSQL answers at 127.0.0.1:5432")
        raise AssertionError("unreachable")
    name = f"cashet_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_schema() -> str:
    """A schema name no other test uses."""
    return f"t_{uuid.uuid4().hex[:16]}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema and everything in it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url(postgres_dsn: str) -> Iterator[str]:
    """A store URL of a fresh schema in this run's database (dropped after the test)."""
    schema = fresh_schema()
    try:
        yield f"{postgres_dsn}?schema={schema}"
    finally:
        drop_schema(postgres_dsn, schema)
