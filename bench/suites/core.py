"""Core suite: the hit and miss paths, big arguments, big results, store size, pipelines.

Every peer caches the same functions (``_workloads``) in its own fresh temp store. Our
``Client`` and cashet 0.5.0 run the same code (``_cashet_api``); 0.5.0 runs it in its own
venv through ``peer_cashet050.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _cashet_api as api
import _workloads as w
from _context import Context
from _harness import (
    Config,
    Outcome,
    Unavailable,
    faster,
    fmt_ns,
    info,
    measure,
    suite,
    throughput,
    within,
)

core = suite("core", "hit/miss latency, big arguments and results, store size, pipelines")

MiB = 2**20
RESULT_BYTES = (100 * MiB, 4 * MiB)  # (full, quick)
FRAME_ROWS = (500_000, 20_000)
BIG_STORE = (20_000, 1_000)
SMALL_STORE = 100


# --- peers ----------------------------------------------------------------------------------


def ours_hit(ctx: Context, func: Any, arg: Any, **kw: Any) -> Outcome:
    return api.hit(ctx.ours(), ctx.tmpdir("ours"), ctx.cfg, func, arg, **kw)


def joblib_hit(ctx: Context, func: Any, arg: Any, **kw: Any) -> Outcome:
    joblib = ctx.require("joblib")
    cached = joblib.Memory(location=str(ctx.tmpdir("joblib")), verbose=0).cache(func)
    cached(arg)
    return measure(lambda: cached(arg), ctx.cfg, **kw)


def diskcache_memoize(ctx: Context, func: Any) -> Any:
    diskcache = ctx.require("diskcache")
    return diskcache.Cache(str(ctx.tmpdir("diskcache"))).memoize()(func)


def rounds(cfg: Config, measurers: dict[str, Callable[[Config], Outcome]], n: int = 2) -> dict:
    """Measure each peer ``n`` times, alternating, and pool the samples (less drift bias)."""
    part = dataclasses.replace(cfg, budget_s=cfg.budget_s / n, min_samples=-(-cfg.min_samples // n))
    pooled: dict[str, Outcome] = {}
    for _ in range(n):
        for name, run in measurers.items():
            out = run(part)
            pooled[name] = pooled[name].merged(out) if name in pooled else out
    return pooled


# --- scenarios ------------------------------------------------------------------------------


@core.scenario(
    "hit_f1",
    "hit of f(1): submit + load",
    targets=[faster("cashet050", 20), faster("joblib"), info("diskcache"), info("lru_cache")],
    external=["cashet050"],
)
def hit_f1(ctx: Context) -> dict[str, Outcome]:
    def lru() -> Outcome:
        lf = functools.lru_cache(maxsize=None)(w.f)
        lf(1)
        return measure("lf(1)", ctx.cfg, globals={"lf": lf})

    def disk() -> Outcome:
        cached = diskcache_memoize(ctx, w.f)
        cached(1)
        return measure(lambda: cached(1), ctx.cfg)

    return {
        "ours": ctx.attempt("ours", lambda: ours_hit(ctx, w.f, 1)),
        "joblib": ctx.attempt("joblib", lambda: joblib_hit(ctx, w.f, 1)),
        "diskcache": ctx.attempt("diskcache", disk),
        "lru_cache": ctx.attempt("lru_cache", lru),
    }


@core.scenario(
    "miss_trivial",
    "miss of a trivial function (new argument each time)",
    targets=[faster("cashet050", 15), info("joblib"), info("diskcache")],
    external=["cashet050"],
)
def miss_trivial(ctx: Context) -> dict[str, Outcome]:
    def miss_with(cached: Callable[[int], Any]) -> Outcome:
        args = itertools.count()
        return measure(lambda: cached(next(args)), ctx.cfg)

    def job() -> Outcome:
        joblib = ctx.require("joblib")
        return miss_with(joblib.Memory(str(ctx.tmpdir("joblib")), verbose=0).cache(w.trivial))

    return {
        "ours": ctx.attempt(
            "ours", lambda: api.miss_trivial(ctx.ours(), ctx.tmpdir("ours"), ctx.cfg)
        ),
        "joblib": ctx.attempt("joblib", job),
        "diskcache": ctx.attempt("diskcache", lambda: miss_with(diskcache_memoize(ctx, w.trivial))),
    }


def flag_too_fast(results: dict[str, Outcome]) -> None:
    """Flag a peer that "hashed" 100 MiB in well under one single-thread BLAKE3 pass.

    Ours is exempt: it hashes big buffers with BLAKE3 on every core, legitimately faster.
    """
    floor = results.get("baseline")
    if floor is None or not floor.ok:
        return
    for name, out in results.items():
        if name in ("ours", "baseline") or not out.ok:
            continue
        if out.median_ns < 0.5 * floor.median_ns:  # type: ignore[operator]
            share = 100 * out.median_ns / floor.median_ns  # type: ignore[operator]
            why = f"suspiciously fast: {share:.0f}% of one BLAKE3 pass over the bytes"
            out.note = f"{why}; {out.note}" if out.note else why


@core.scenario(
    "hit_numpy_100mib",
    "hit with a 100 MiB float64 NumPy argument",
    targets=[throughput("baseline", 70), faster("joblib", 5)],
    external=["cashet050"],
    baseline="blake3 1-thread",
    annotate=flag_too_fast,
)
def hit_numpy_100mib(ctx: Context) -> dict[str, Outcome]:
    arr = w.make_array(ctx.cfg.pick(*api.NUMPY_ARG_BYTES))
    ctx.note(
        f"argument: {arr.nbytes / MiB:.0f} MiB float64 array; "
        "baseline: blake3(buf).digest() over its bytes, one thread"
    )

    def job() -> Outcome:
        out = joblib_hit(ctx, w.first_value, arr, min_samples=5)
        joblib = ctx.require("joblib")
        probe = joblib.Memory(str(ctx.tmpdir("joblib-probe")), verbose=0).cache(w.middle_value)
        out.extra["distinguishes_arrays"] = api.distinguishes_arrays(probe, arr)
        return out

    def raw_blake3() -> Outcome:
        blake3 = ctx.require("blake3").blake3
        buf = memoryview(arr).cast("B")
        return measure(lambda: blake3(buf).digest(), ctx.cfg, min_samples=5)

    return {
        "ours": ctx.attempt(
            "ours", lambda: api.hit_numpy(ctx.ours(), ctx.tmpdir("ours"), ctx.cfg, arr)
        ),
        "joblib": ctx.attempt("joblib", job),
        "baseline": ctx.attempt("baseline", raw_blake3),
    }


@core.scenario(
    "hit_reads_globals",
    "hit of a task reading a module constant and a 20-key config dict",
    targets=[within("baseline", 1.5), info("joblib"), info("diskcache")],
    baseline="ours: hit of f(1)",
)
def hit_reads_globals(ctx: Context) -> dict[str, Outcome]:
    ctx.note(
        "the constant is hashed once per binding, the dict on every call (it can change in "
        "place): both are in the key since issue 11"
    )

    def run() -> dict[str, Outcome]:
        client_cls = ctx.ours()
        with (
            client_cls(store_dir=str(ctx.tmpdir("ours"))) as ours,
            client_cls(store_dir=str(ctx.tmpdir("base"))) as base,
        ):
            ours.submit(w.scaled_by_config, 1).load()
            base.submit(w.f, 1).load()

            def hit_on(client: Any, func: Any) -> Callable[[Config], Outcome]:
                return lambda cfg: measure(lambda: client.submit(func, 1).load(), cfg)

            measurers = {"ours": hit_on(ours, w.scaled_by_config), "baseline": hit_on(base, w.f)}
            return rounds(ctx.cfg, measurers, n=4)

    def disk() -> Outcome:
        cached = diskcache_memoize(ctx, w.scaled_by_config)
        cached(1)
        return measure(lambda: cached(1), ctx.cfg)

    results = _both_or_baseline(ctx, run, None)
    results["joblib"] = ctx.attempt("joblib", lambda: joblib_hit(ctx, w.scaled_by_config, 1))
    results["diskcache"] = ctx.attempt("diskcache", disk)
    return results


@core.scenario(
    "hit_numpy_global_100mib",
    "hit of a task reading a 100 MiB NumPy global",
    targets=[throughput("baseline", 70)],
    baseline="blake3 1-thread",
)
def hit_numpy_global_100mib(ctx: Context) -> dict[str, Outcome]:
    arr = w.make_array(ctx.cfg.pick(*api.NUMPY_ARG_BYTES))
    ctx.note(
        f"global: {arr.nbytes / MiB:.0f} MiB float64 array, re-hashed on every call (it can "
        "change in place; opt out with cashet.hashing.ignore); baseline: blake3 over its "
        "bytes, one thread"
    )
    w.BIG_GLOBAL = arr

    def raw_blake3() -> Outcome:
        blake3 = ctx.require("blake3").blake3
        buf = memoryview(arr).cast("B")
        return measure(lambda: blake3(buf).digest(), ctx.cfg, min_samples=5)

    try:
        return {
            "ours": ctx.attempt(
                "ours", lambda: ours_hit(ctx, w.reads_big_global, 1, min_samples=5)
            ),
            "baseline": ctx.attempt("baseline", raw_blake3),
        }
    finally:
        w.BIG_GLOBAL = None


@core.scenario(
    "hit_dataframe_40mb",
    "hit with a ~40 MB pandas DataFrame argument",
    targets=[faster("joblib", 3)],
)
def hit_dataframe_40mb(ctx: Context) -> dict[str, Outcome]:
    df = w.make_frame(ctx.cfg.pick(*FRAME_ROWS))
    ctx.note(
        f"argument: {len(df):,} rows x {len(df.columns)} columns (9 numeric, 1 short string), "
        f"{w.frame_data_bytes(df) / 1e6:.1f} MB of data, "
        f"{df.memory_usage(deep=True).sum() / 1e6:.1f} MB in memory"
    )
    return {
        "ours": ctx.attempt("ours", lambda: ours_hit(ctx, w.frame_rows, df, min_samples=5)),
        "joblib": ctx.attempt("joblib", lambda: joblib_hit(ctx, w.frame_rows, df, min_samples=5)),
    }


def unique_contents(arr: Any) -> Callable[[], int]:
    """Each call changes the first element, so every stored result is a new blob."""
    counter = itertools.count(1)

    def bump() -> int:
        i = next(counter)
        arr[0] = float(i)
        return i

    return bump


#: Every sample of the result scenarios moves the whole result: few samples, one warm-up.
RESULT_SAMPLES = {"min_samples": 5, "max_samples": 10, "warmup": 1}


@core.scenario(
    "result_100mib_store",
    "store a 100 MiB NumPy result (miss path, no compute)",
    targets=[within("baseline", 2.5)],
    baseline="plain write",
)
def result_100mib_store(ctx: Context) -> dict[str, Outcome]:
    arr = w.make_array(ctx.cfg.pick(*RESULT_BYTES))
    ctx.note(
        f"result: {arr.nbytes / MiB:.0f} MiB float64 array, a new blob each sample "
        "(the previous one deleted untimed); baseline: open(new_file, 'wb').write() of the "
        "same bytes (no fsync)"
    )
    buf = memoryview(arr).cast("B")
    bump = unique_contents(arr)

    # Both sides delete the previous sample's file untimed. On this machine a 100 MiB write
    # takes ~21 ms while the page cache recycles, but ~250 ms once dirty pages pile up
    # (writeback throttling): keeping one result on disk measures both in the same regime.
    def ours_store(client: Any) -> Callable[[Config], Outcome]:
        last: list[Any] = []

        def prepare() -> int:
            if last:
                client.rm(last.pop().commit_hash)  # keep one result on disk, not dozens
            return bump()

        def store(i: int) -> None:
            last.append(client.submit(w.produce_result, i))

        return lambda cfg: measure(store, cfg, prepare=prepare, **RESULT_SAMPLES)

    def plain_write(folder: Path) -> Callable[[Config], Outcome]:
        def prepare() -> Path:
            for old in folder.iterdir():
                old.unlink()
            return folder / f"{bump()}.bin"

        def write(path: Path) -> None:
            with open(path, "wb") as fh:
                fh.write(buf)

        return lambda cfg: measure(write, cfg, prepare=prepare, **RESULT_SAMPLES)

    def run() -> dict[str, Outcome]:
        with ctx.ours()(store_dir=str(ctx.tmpdir("ours"))) as client:
            client.submit(w.f, 0).load()  # open the store outside the timing
            return rounds(
                ctx.cfg,
                {"ours": ours_store(client), "baseline": plain_write(ctx.tmpdir("plain"))},
            )

    w.RESULT[0] = arr
    try:
        return _both_or_baseline(ctx, run, plain_write(ctx.tmpdir("plain-alone")))
    finally:
        w.RESULT[0] = None


@core.scenario(
    "result_100mib_load",
    "load a 100 MiB NumPy result: ref.load() on a fresh handle",
    targets=[within("baseline", 1.5)],
    baseline="read + blake3",
)
def result_100mib_load(ctx: Context) -> dict[str, Outcome]:
    arr = w.make_array(ctx.cfg.pick(*RESULT_BYTES))
    ctx.note(
        f"result: {arr.nbytes / MiB:.0f} MiB float64 array (read + verify + deserialize); "
        "baseline: open().read() of the same bytes + blake3 over them"
    )

    def plain_read(cfg: Config) -> Outcome:
        blake3 = ctx.require("blake3").blake3
        path = ctx.tmpdir("plain") / "result.bin"
        path.write_bytes(memoryview(arr).cast("B"))

        def read(_: None) -> None:
            with open(path, "rb") as fh:
                blake3(fh.read()).digest()

        return measure(read, cfg, prepare=lambda: None, **RESULT_SAMPLES)

    def run() -> dict[str, Outcome]:
        np = ctx.require("numpy")
        with ctx.ours()(store_dir=str(ctx.tmpdir("ours"))) as client:
            client.submit(w.produce_result, 0)  # the one stored result
            if not np.array_equal(client.submit(w.produce_result, 0).load(), arr):
                raise AssertionError("loaded result differs from the stored array")

            def ours_load(cfg: Config) -> Outcome:
                # a fresh handle each sample (a hit: no load yet), then time load() alone
                return measure(
                    lambda ref: ref.load(),
                    cfg,
                    prepare=lambda: client.submit(w.produce_result, 0),
                    **RESULT_SAMPLES,
                )

            return rounds(ctx.cfg, {"ours": ours_load, "baseline": plain_read})

    w.RESULT[0] = arr
    try:
        return _both_or_baseline(ctx, run, plain_read)
    finally:
        w.RESULT[0] = None


def _both_or_baseline(
    ctx: Context,
    run: Callable[[], dict[str, Outcome]],
    baseline: Callable[[Config], Outcome] | None,
) -> dict[str, Outcome]:
    """``run()`` measures ours and the baseline interleaved; without ours, the baseline alone."""
    try:
        return run()
    except Unavailable as exc:
        results = {"ours": Outcome.unavailable(str(exc))}
    except Exception as exc:
        results = {"ours": ctx.failed("ours", exc)}
    if baseline is not None:
        results["baseline"] = ctx.attempt("baseline", lambda: baseline(ctx.cfg))
    return results


@core.scenario(
    "hit_20k_vs_100",
    "hit of f(1) with 20,000 entries in the store (baseline: 100 entries)",
    targets=[within("baseline", 1.1)],
    baseline="ours @ 100",
)
def hit_20k_vs_100(ctx: Context) -> dict[str, Outcome]:
    big = ctx.cfg.pick(*BIG_STORE)
    ctx.note(f"ours: {big:,} entries; baseline: ours with {SMALL_STORE} entries")

    def run() -> dict[str, Outcome]:
        client_cls = ctx.ours()
        with (
            client_cls(store_dir=str(ctx.tmpdir("small"))) as small,
            client_cls(store_dir=str(ctx.tmpdir("big"))) as large,
        ):
            for client, n in ((small, SMALL_STORE), (large, big)):
                t0 = time.perf_counter_ns()
                for i in range(n - 1):
                    client.submit(w.fill, i)
                client.submit(w.f, 1).load()
                if client is large:
                    per = (time.perf_counter_ns() - t0) / n
                    ctx.note(f"filled {n:,} entries by misses at {fmt_ns(per)} each")

            def hit_on(client: Any) -> Callable[[Config], Outcome]:
                return lambda cfg: measure(lambda: client.submit(w.f, 1).load(), cfg)

            return rounds(ctx.cfg, {"ours": hit_on(large), "baseline": hit_on(small)}, n=4)

    return _both_or_baseline(ctx, run, None)


@core.scenario(
    "pipeline_3step_rerun",
    "re-run of a cached 3-step pipeline (load -> normalize -> train)",
    targets=[faster("cashet050", 10)],
    external=["cashet050"],
)
def pipeline_3step_rerun(ctx: Context) -> dict[str, Outcome]:
    return {
        "ours": ctx.attempt(
            "ours", lambda: api.pipeline_rerun(ctx.ours(), ctx.tmpdir("ours"), ctx.cfg)
        )
    }
