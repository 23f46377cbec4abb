"""PostgreSQL suite: the hit path on PostgresStore against a bare indexed SELECT, the hit at
1,000,000 commits against 1,000, and ``push`` of 10,000 small commits.

Needs a PostgreSQL: ``$CASHET_BENCH_POSTGRES_DSN``, else the server at 127.0.0.1:5432
(trust auth, user postgres); without one (or without ``cashet[postgres]``) the scenarios
report "unavailable". Everything is written in the database ``cashet_bench`` (created when
missing); the 1,000,000-commit store is built once (rows made by ``generate_series`` in the
server: about a minute) and kept there for the next runs (schema ``bench_1m``).

    python bench/run.py --suite postgres
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import _workloads as w
from _context import Context
from _harness import Config, Outcome, Unavailable, info, measure, suite, within

from suites.core import rounds

pg_suite = suite("postgres", "hit latency on PostgreSQL vs a bare SELECT, 1M commits, push")

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "cashet_bench"


def bench_dsn(ctx: Context) -> str:
    """The DSN of the bench database (created when missing), or ``Unavailable``."""
    psycopg = ctx.require("psycopg")
    admin = os.environ.get("CASHET_BENCH_POSTGRES_DSN") or DEFAULT_DSN
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
    except Exception as exc:
        raise Unavailable(f"no PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})") from exc
    return admin.rpartition("/")[0] + "/" + DATABASE


def store_class() -> Any:
    try:
        from cashet.postgres_store import PostgresStore
    except ImportError as exc:
        raise Unavailable(f"cashet.postgres_store: {exc}") from exc
    return PostgresStore


@contextmanager
def scratch_schema(dsn: str) -> Iterator[str]:
    """A fresh schema, dropped with everything in it afterwards."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def bare_select(dsn: str, schema: str, commit_hash: str) -> tuple[Any, Any]:
    """A psycopg connection and a bare indexed point SELECT on it (psycopg's plain idiom)."""
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)
    query = f'SELECT hash, body FROM "{schema}".commits WHERE hash = %s'

    def select() -> Any:
        return conn.execute(query, (commit_hash,)).fetchone()

    return conn, select


@pg_suite.scenario(
    "postgres_hit_f1",
    "hit of f(1) on PostgresStore: submit + load (baseline: one indexed SELECT)",
    targets=[
        within("baseline", 2.5, label="bare indexed SELECT"),
        info("held_cursor", label="the SELECT on a held cursor"),
    ],
    baseline="psycopg SELECT",
)
def postgres_hit_f1(ctx: Context) -> dict[str, Outcome]:
    try:
        dsn = bench_dsn(ctx)
        cls = store_class()
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc)), "baseline": Outcome.unavailable(str(exc))}
    ctx.note(
        "baseline: conn.execute(SELECT hash, body FROM commits WHERE hash = %s).fetchone() on"
        " a psycopg autocommit connection to the same database (a round trip on loopback);"
        " held_cursor: the same SELECT on one cursor kept open, as the store does"
    )
    with scratch_schema(dsn) as schema, ctx.ours()(store=cls(dsn, schema=schema)) as client:
        ref = client.submit(w.f, 1)
        ref.load()
        conn, select = bare_select(dsn, schema, ref.commit_hash)
        cur = conn.cursor()
        query = f'SELECT hash, body FROM "{schema}".commits WHERE hash = %s'

        def held() -> Any:
            cur.execute(query, (ref.commit_hash,))
            return cur.fetchone()

        try:
            return rounds(
                ctx.cfg,
                {
                    "ours": lambda cfg: measure(lambda: client.submit(w.f, 1).load(), cfg),
                    "baseline": lambda cfg: measure(select, cfg),
                    "held_cursor": lambda cfg: measure(held, cfg),
                },
                n=4,
            )
        finally:
            conn.close()


# --- 1,000,000 commits ------------------------------------------------------------------------

FILL = """
INSERT INTO {s}.commits (hash, fingerprint, func_name, status, cacheable, created_at, body)
SELECT md5(i::text || 'c') || md5(i::text || 'd'), md5(i::text) || ':' || md5(i::text || 'a'),
       'bench.fill' || (i %% 100), 'completed', true, 1700000000 + i, '{{"filler": true}}'
FROM generate_series(%s::bigint, %s::bigint) AS i
"""


def filled_schema(dsn: str, schema: str, commits: int) -> None:
    """Make ``schema`` a store holding ``commits`` filler commits (kept if already there)."""
    import psycopg

    cls = store_class()
    cls(dsn, schema=schema).close()  # created and migrated
    with psycopg.connect(dsn, autocommit=True) as conn:
        marker = f'"{schema}".meta'
        version = conn.execute(
            f"SELECT value FROM {marker} WHERE key = 'schema_version'"
        ).fetchone()[0]
        want = f"{commits} v{version}"  # rebuilt when the schema changes
        have = conn.execute(f"SELECT value FROM {marker} WHERE key = 'bench_fill'").fetchone()
        if have is not None and have[0] == want:
            return
        conn.execute(f'TRUNCATE "{schema}".commits CASCADE')
        step = 100_000
        for first in range(1, commits + 1, step):
            last = min(commits, first + step - 1)
            conn.execute(FILL.format(s=f'"{schema}"'), (first, last))
        conn.execute(f'ANALYZE "{schema}".commits')
        conn.execute(
            f"INSERT INTO {marker} (key, value) VALUES ('bench_fill', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (want,),
        )


@pg_suite.scenario(
    "postgres_hit_1m",
    "hit of f(1) on a PostgresStore of 1,000,000 commits (vs one of 1,000)",
    targets=[within("small_store", 1.2, label="the same hit, 1,000 commits")],
)
def postgres_hit_1m(ctx: Context) -> dict[str, Outcome]:
    try:
        dsn = bench_dsn(ctx)
        cls = store_class()
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc))}
    big = ctx.cfg.pick(1_000_000, 20_000)
    ctx.note(
        f"filler commits made in the server by generate_series ({big:,} kept in schema"
        f" bench_{big}, built once); f(1) stored through the client in each store"
    )
    started = time.perf_counter()
    filled_schema(dsn, f"bench_{big}", big)
    filled_schema(dsn, "bench_1000", 1000)
    built = time.perf_counter() - started
    ctx.note(f"stores ready in {built:.1f} s (0 s when cached from an earlier run)")
    clients = {
        name: ctx.ours()(store=cls(dsn, schema=schema))
        for name, schema in (("ours", f"bench_{big}"), ("small_store", "bench_1000"))
    }
    try:
        for client in clients.values():
            client.submit(w.f, 1).load()
        return rounds(ctx.cfg, {name: _hits(c) for name, c in clients.items()}, n=4)
    finally:
        for client in clients.values():
            client.close()


def _hits(client: Any) -> Any:
    def run(cfg: Config) -> Outcome:
        return measure(lambda: client.submit(w.f, 1).load(), cfg)

    return run


# --- push -------------------------------------------------------------------------------------


@pg_suite.scenario(
    "postgres_push_10k",
    "push of 10,000 small commits from SQLite to an empty PostgresStore; again with nothing new",
    targets=[within("limit", 1.0, label="the second push: 1 s"), info("first_push")],
)
def postgres_push(ctx: Context) -> dict[str, Outcome]:
    try:
        dsn = bench_dsn(ctx)
        store_class()
    except Unavailable as exc:
        return {"ours": Outcome.unavailable(str(exc))}
    n = ctx.cfg.pick(10_000, 500)
    ctx.note(
        f"{n:,} commits of w.trivial(i) (inline results) in a SQLite store, pushed by"
        " client.push(url) to a fresh schema: first_push copies all of them (one sample);"
        " ours: the second push, which finds nothing new; limit: 1 s"
    )
    with ctx.ours()(store_dir=str(ctx.tmpdir("push-source"))) as source:
        for i in range(n):
            source.submit(w.trivial, i)
        with scratch_schema(dsn) as schema:
            url = f"{dsn}?schema={schema}"
            started = time.perf_counter_ns()
            copied = source.push(url)
            first = Outcome.from_samples([time.perf_counter_ns() - started], 1)
            first.note = f"{int(copied):,} commits, {first.median_ns / 1e9 / n * 1e6:.0f} µs each"

            def again(cfg: Config) -> Outcome:
                return measure(lambda: source.push(url), cfg, min_samples=3, max_samples=5)

            ours = again(ctx.cfg)
    limit = Outcome.from_samples([1e9], 1)
    return {"ours": ours, "first_push": first, "limit": limit}
