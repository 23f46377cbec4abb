"""Scale suite (issue 18 "Fast at scale"): hits over random keys on stores of 20,000, 100,000
and 1,000,000 entries, bytes on disk per entry, the miss on an empty store, the per-miss cost
of filling to a million against the first thousand, and random-key hits on Redis, each side by
side with diskcache's ``memoize`` (and joblib's ``Memory`` where it applies).

Every store holds ``f(k)`` for ``k`` in ``range(n)``: the first and last 1,000 are real misses
(``client.submit(f, k)``; the same calls through diskcache), each timed. Between them, stores
of 100,000 and more are filled in bulk: for ours, what those misses would write (the key,
manifest and sealed commit made by the functions a miss calls), 2,000 per transaction; for
diskcache, its memoized calls 2,000 per ``cache.transact()``.
The stores are built once and kept under ``.bench/scale-v<FORMAT>-s<schema>/`` (ours) and
``.bench/scale-peers-v<FORMAT>/`` (the peers') between runs
(the 1M pair takes a few minutes to build, once): a new on-disk format (``FORMAT``, or our
SQLite schema version) builds them again. A random-key hit calls each key once, in a random
order, through a client opened for the row (nothing decoded yet: a re-run of a sweep).

    python bench/run.py --suite scale [--quick]     # --quick: 2,000 entries, nothing kept
    CASHET_BENCH_SCALE_SIZES=20000,100000 python bench/run.py --suite scale   # no 1M store
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _workloads as w
from _context import Context
from _harness import Config, Outcome, Unavailable, info, measure, suite, within

scale = suite("scale", "random-key hits at 20k/100k/1M entries, bytes per entry, miss, fill")

BENCH = Path(__file__).resolve().parents[1]
#: Bump to rebuild the kept stores (what they hold or how they are filled changed).
FORMAT = 3
SIZES = (20_000, 100_000, 1_000_000)
QUICK_SIZE = 2_000
HITS = (2_000, 200)  # random keys hit per peer per row: (full, quick)
EDGE = 1_000  # the misses timed one by one at the start and the end of a fill


_quick_root: list[Path] = []


def _root(ctx: Context) -> Path:
    if ctx.cfg.quick:  # built once per run, removed at exit
        if not _quick_root:
            _quick_root.append(Path(tempfile.mkdtemp(prefix="cashet-bench-scale-")))
            atexit.register(shutil.rmtree, _quick_root[0], True)
        return _quick_root[0]
    from cashet.stores.sqlite.schema import SCHEMA_VERSION

    return BENCH.parent / ".bench" / f"scale-v{FORMAT}-s{SCHEMA_VERSION}"


def _peers_root(ctx: Context) -> Path:
    """Where the peers' stores are kept: not keyed by our schema."""
    if ctx.cfg.quick:
        return _root(ctx) / "peers"
    return BENCH.parent / ".bench" / f"scale-peers-v{FORMAT}"


def _fill(
    call: Callable[[int], Any], n: int, bulk: Callable[[range], None] | None = None
) -> dict[str, Any]:
    """Make ``n`` misses, the first and last ``EDGE`` real and timed one by one; the ones
    between through ``bulk`` when given (many per transaction: a big store in minutes)."""
    first: list[int] = []
    last: list[int] = []
    clock = time.perf_counter_ns
    for k in range(min(n, EDGE)):
        t = clock()
        call(k)
        first.append(clock() - t)
    middle = range(min(n, EDGE), max(EDGE, n - EDGE))
    t0 = clock()
    if bulk is not None:
        for i in range(0, len(middle), BULK):
            bulk(middle[i : i + BULK])
    else:
        for k in middle:
            call(k)
    middle_ns = (clock() - t0) / max(1, len(middle))
    for k in range(max(EDGE, n - EDGE), n):
        t = clock()
        call(k)
        last.append(clock() - t)
    return {"first_ns": first, "last_ns": last, "middle_ns": middle_ns, "bulk": bulk is not None}


BULK = 2_000  # the misses of a bulk fill written per transaction
BULK_FROM = 100_000  # stores this big are filled in bulk between their first and last 1k


def _ours_bulk(client: Any) -> Callable[[range], None]:
    """Write what the misses of ``f(k)`` for the keys given would write (their key,
    manifest, snapshot, result and sealed commit, made by the same functions a miss
    calls), in one transaction, with the SQLite store's own row code."""
    from cashet.core.flow import unique_token
    from cashet.executors._drive import describe_call
    from cashet.hashing.commits import seal_commit
    from cashet.models import Commit, ObjectRef, TaskStatus, utcnow
    from cashet.stores.blobs import blob_hash, encode_blob
    from cashet.stores.sqlite import schema as sql
    from cashet.stores.sqlite.tiny import in_row

    store = client.store

    def bulk(keys: range) -> None:
        rows = []
        for k in keys:
            task_def, _, _ = client._explained_call(w.f, (k,), {})
            snapshot, inputs, manifest = describe_call(w.f, (k,), {}, task_def)
            task_def.args_snapshot, task_def.manifest = snapshot, manifest
            start = time.perf_counter()
            data = client.serializer.dumps(w.f(k))
            now = utcnow()
            commit = Commit(
                hash="",
                task_def=task_def,
                status=TaskStatus.COMPLETED,
                created_at=now,
                result=ObjectRef(blob_hash(data), len(data)),
                tags=dict(task_def.tags),
                compute_seconds=time.perf_counter() - start,
                input_hashes=inputs,
                salt=unique_token(),
                last_accessed=now,
            )
            commit.sealed_json = seal_commit(commit)
            rows.append((commit, store._commit_row(commit), encode_blob(data)))
        with store._db.transact() as conn:
            for commit, row, encoded in rows:
                held = encoded if in_row(encoded, store._inline_threshold) else None
                store._insert_commit(conn, commit, row, held)  # (as put_result: tiny, v8)
                ref = commit.result
                if held is None:
                    conn.execute(
                        sql.BLOB_UPSERT, (ref.hash, ref.size, len(encoded), encoded, time.time())
                    )

    return bulk


def _disk_bulk(cache: Any, cached: Callable[[int], Any]) -> Callable[[range], None]:
    def bulk(keys: range) -> None:
        with cache.transact():  # diskcache's own batching: one transaction
            for k in keys:
                cached(k)

    return bulk


def _db_bytes(path: Path, names: tuple[str, ...]) -> int:
    return sum((path / name).stat().st_size for name in names if (path / name).exists())


def _checkpointed(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _kept(root: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """What ``build`` recorded when it filled ``root`` (built now if not yet)."""
    meta_file = root / "meta.json"
    if meta_file.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        return meta
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    meta = build(root)
    meta_file.write_text(json.dumps(meta))
    return meta


def built(ctx: Context, n: int) -> dict[str, Any]:
    """The kept stores of ``n`` entries (built now if missing) and what their fill took:
    ours under a directory keyed by our on-disk format, the peers' under one of their own
    (a new schema of ours rebuilds only ours)."""
    big = n >= BULK_FROM
    ours_root = _root(ctx) / f"n{n}"
    peers_root = _peers_root(ctx) / f"n{n}"

    def build_ours(root: Path) -> dict[str, Any]:
        ctx.log(f"scale: filling our store of {n:,} entries under {root} (kept for later runs)")
        with ctx.ours()(store_dir=str(root / "ours")) as client:
            meta = _fill(lambda k: client.submit(w.f, k), n, _ours_bulk(client) if big else None)
        _checkpointed(root / "ours" / "meta.db")
        meta["bytes"] = _db_bytes(root / "ours", ("meta.db", "meta.db-wal"))
        return {"ours": meta}

    def build_peers(root: Path) -> dict[str, Any]:
        ctx.log(f"scale: filling the peers' stores of {n:,} entries under {root} (kept)")
        meta: dict[str, Any] = {}
        try:
            diskcache = ctx.require("diskcache")
            with diskcache.Cache(str(root / "diskcache")) as cache:
                cached = cache.memoize()(w.f)
                meta["diskcache"] = _fill(cached, n, _disk_bulk(cache, cached) if big else None)
            _checkpointed(root / "diskcache" / "cache.db")
            meta["diskcache"]["bytes"] = _db_bytes(root / "diskcache", ("cache.db", "cache.db-wal"))
        except Unavailable as exc:
            meta["diskcache"] = {"unavailable": str(exc)}
        if n == min(_sizes(ctx.cfg)):
            try:
                joblib = ctx.require("joblib")
                memory = joblib.Memory(str(root / "joblib"), verbose=0)
                meta["joblib"] = _fill(memory.cache(w.f), n)
            except Unavailable as exc:
                meta["joblib"] = {"unavailable": str(exc)}
        return meta

    return {
        **_kept(peers_root, build_peers),
        **_kept(ours_root, build_ours),
        "n": n,
        "root": ours_root,
        "peers_root": peers_root,
    }


def _sizes(cfg: Config) -> tuple[int, ...]:
    """The store sizes of this run: ``$CASHET_BENCH_SCALE_SIZES`` (e.g. ``20000,100000``:
    only those, no 1M build) when set, the rows of the others then unavailable."""
    if cfg.quick:
        return (QUICK_SIZE,)
    chosen = os.environ.get("CASHET_BENCH_SCALE_SIZES")
    return tuple(int(x) for x in chosen.split(",")) if chosen else SIZES


def _keys(n: int, count: int) -> Callable[[], int]:
    keys = random.Random(time.time_ns()).sample(range(n), min(n, count + 8))
    it = iter(keys)
    return lambda: next(it)


def _random_hits(cfg: Config, call: Callable[[int], Any], n: int) -> Outcome:
    count = cfg.pick(*HITS)
    return measure(
        call, cfg, prepare=_keys(n, count), max_samples=count, min_samples=min(count, 50), warmup=2
    )


def _hits(ctx: Context, n: int, peers: tuple[str, ...]) -> dict[str, Outcome]:
    b = built(ctx, n)
    root: Path = b["root"]
    out: dict[str, Outcome] = {}

    def ours() -> Outcome:
        with ctx.ours()(store_dir=str(root / "ours")) as client:
            return _random_hits(ctx.cfg, lambda k: client.submit(w.f, k).load(), n)

    def disk() -> Outcome:
        if "unavailable" in b.get("diskcache", {}):
            raise Unavailable(b["diskcache"]["unavailable"])
        diskcache = ctx.require("diskcache")
        with diskcache.Cache(str(b["peers_root"] / "diskcache")) as cache:
            return _random_hits(ctx.cfg, cache.memoize()(w.f), n)

    def joblib_() -> Outcome:
        if "joblib" not in b or "unavailable" in b["joblib"]:
            raise Unavailable(b.get("joblib", {}).get("unavailable", "not built at this size"))
        joblib = ctx.require("joblib")
        cached = joblib.Memory(str(b["peers_root"] / "joblib"), verbose=0).cache(w.f)
        return _random_hits(ctx.cfg, cached, n)

    runs = {"ours": ours, "diskcache": disk, "joblib": joblib_}
    for _ in range(2):  # two rounds, alternating, pooled
        for peer in peers:
            got = ctx.attempt(peer, runs[peer])
            out[peer] = out[peer].merged(got) if peer in out else got
    if "ours" in out:
        out["ours"].extra["entries"] = n
    return out


def _hit_row(n: int) -> None:
    peers: tuple[str, ...] = (
        ("ours", "diskcache", "joblib") if n == SIZES[0] else ("ours", "diskcache")
    )
    targets = [within("diskcache", 1.0, "≤ diskcache")]
    if "joblib" in peers:
        targets.append(info("joblib"))
    if n == SIZES[-1]:
        targets.append(within("ours_20k", 1.3, f"≤ 1.3x ours at {SIZES[0]:,}"))

    @scale.scenario(
        f"scale_hit_random_{n // 1000}k",
        f"hit, random keys (each once), store of {n:,} entries (quick: {QUICK_SIZE:,})",
        targets=targets,
    )
    def row(ctx: Context) -> dict[str, Outcome]:
        size = QUICK_SIZE if ctx.cfg.quick else n
        if size not in _sizes(ctx.cfg):
            why = Outcome.unavailable(f"not in $CASHET_BENCH_SCALE_SIZES ({size:,} entries)")
            return {"ours": why}
        out = _hits(ctx, size, peers if size == min(_sizes(ctx.cfg)) else peers[:2])
        if n == SIZES[-1]:
            small = min(_sizes(ctx.cfg))
            out["ours_20k"] = _hits(ctx, small, ("ours",))["ours"]
        return out


for _n in SIZES:
    _hit_row(_n)


@scale.scenario(
    "scale_bytes_per_entry",
    "bytes on disk per entry of f(x) = x + 1, each size (in the note; times: first 1k misses)",
    targets=[info("diskcache")],
)
def scale_bytes_per_entry(ctx: Context) -> dict[str, Outcome]:
    lines = []
    for n in _sizes(ctx.cfg):
        b = built(ctx, n)
        ours = b["ours"]["bytes"] / n
        disk = b.get("diskcache", {}).get("bytes")
        lines.append(
            f"{n:,}: ours {ours:,.0f} B/entry (target ≤ 400: {'met' if ours <= 400 else 'MISSED'})"
            + ("" if disk is None else f", diskcache {disk / n:,.0f} B/entry")
        )
    ctx.note("bytes per entry — " + "; ".join(lines))
    n = max(_sizes(ctx.cfg))
    b = built(ctx, n)
    # The row's times: the first 1k misses of the fill (for scale; the bytes are the point).
    out = {"ours": Outcome.from_samples([float(x) for x in b["ours"]["first_ns"]])}
    out["ours"].extra = {
        f"bytes_per_entry_{m}": built(ctx, m)["ours"]["bytes"] / m for m in _sizes(ctx.cfg)
    }
    if "first_ns" in b.get("diskcache", {}):
        out["diskcache"] = Outcome.from_samples([float(x) for x in b["diskcache"]["first_ns"]])
        out["diskcache"].extra = {"bytes_per_entry": b["diskcache"]["bytes"] / n}
    return out


@scale.scenario(
    "scale_fill_last_1k",
    f"the last {EDGE:,} misses of a fill to {SIZES[-1]:,} entries (quick: {QUICK_SIZE:,})",
    targets=[within("ours_first_1k", 1.5, "≤ 1.5x our first 1k"), info("diskcache")],
)
def scale_fill_last_1k(ctx: Context) -> dict[str, Outcome]:
    b = built(ctx, max(_sizes(ctx.cfg)))
    out = {
        "ours": Outcome.from_samples([float(x) for x in b["ours"]["last_ns"]]),
        "ours_first_1k": Outcome.from_samples([float(x) for x in b["ours"]["first_ns"]]),
    }
    if "last_ns" in b.get("diskcache", {}):
        out["diskcache"] = Outcome.from_samples([float(x) for x in b["diskcache"]["last_ns"]])
        first = Outcome.from_samples([float(x) for x in b["diskcache"]["first_ns"]])
        ctx.note(f"diskcache's first {EDGE:,} misses: median {first.median_ns / 1000:.0f} µs")
    ctx.note("recorded when the kept stores were filled (see .bench/scale-*/n*/meta.json)")
    return out


@scale.scenario(
    "scale_miss_empty",
    "miss on an empty store: f(k), a new k each time",
    targets=[within("diskcache", 1.2, "≤ 1.2x diskcache"), info("joblib")],
)
def scale_miss_empty(ctx: Context) -> dict[str, Outcome]:
    counter = iter(range(10**9))

    def fresh(cfg: Config, call: Callable[[int], Any]) -> Outcome:
        return measure(call, cfg, prepare=lambda: next(counter), max_samples=2000, warmup=3)

    def ours() -> Outcome:
        with ctx.ours()(store_dir=str(ctx.tmpdir("ours"))) as client:
            return fresh(ctx.cfg, lambda k: client.submit(w.f, k))

    def disk() -> Outcome:
        with ctx.require("diskcache").Cache(str(ctx.tmpdir("diskcache"))) as cache:
            return fresh(ctx.cfg, cache.memoize()(w.f))

    def joblib_() -> Outcome:
        memory = ctx.require("joblib").Memory(str(ctx.tmpdir("joblib")), verbose=0)
        return fresh(ctx.cfg, memory.cache(w.f))

    out: dict[str, Outcome] = {}
    for _ in range(2):
        for peer, run in (("ours", ours), ("diskcache", disk), ("joblib", joblib_)):
            got = ctx.attempt(peer, run)
            out[peer] = out[peer].merged(got) if peer in out else got
    return out


@scale.scenario(
    "scale_hit_random_redis",
    f"hit, random keys (each once), {SIZES[0]:,} entries on Redis (quick: {QUICK_SIZE:,})",
    targets=[info("diskcache", label=f"diskcache, {SIZES[0]:,} entries on disk")],
)
def scale_hit_random_redis(ctx: Context) -> dict[str, Outcome]:
    from suites.redis import redis_url, scratch_prefix, store_class

    n = QUICK_SIZE if ctx.cfg.quick else SIZES[0]

    def ours() -> Outcome:
        url = redis_url(ctx)
        with scratch_prefix(url) as prefix:
            with ctx.ours()(store=store_class()(url, prefix=prefix)) as client:
                for k in range(n):
                    client.submit(w.f, k)
            with ctx.ours()(store=store_class()(url, prefix=prefix)) as client:
                return _random_hits(ctx.cfg, lambda k: client.submit(w.f, k).load(), n)

    out = {"ours": ctx.attempt("ours", ours)}
    out["diskcache"] = _hits(ctx, n, ("diskcache",))["diskcache"]
    if os.environ.get("CASHET_BENCH_REDIS_URL") is None:
        ctx.note("Redis: $CASHET_BENCH_REDIS_URL, else redis://127.0.0.1:6379/0")
    return out
