"""Hits suite: the hit path with hit counting on (issue 15 "Observe", issue 18 "no write on
the hit path"), against the hit path of before, in the same run.

``ours`` counts every hit in memory (written in batches). ``ours_touch`` is the same store
with counting switched off for the executor, which then takes the path of before: a
``touch`` (one write transaction) whenever a commit's access time is over a second old, so
with many keys nearly every hit writes. Both run over one populated store, alternating
rounds; ``diskcache`` memoize over the same keys for scale.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import _workloads as w
from _context import Context
from _harness import Config, Outcome, info, measure, suite, within

hits = suite("hits", "hit path with hit counting on, random keys and same key, vs before")

STORE_SIZE = (20_000, 600)  # (full, quick) entries in the populated store


def _counting(store: Any, on: bool) -> None:
    """Switch hit counting on or off for the executor (off: the touch path of before)."""
    from cashet.executors import local

    local._COUNTS_HITS[type(store)] = on


def _rounds(cfg: Config, measurers: dict[str, Callable[[Config], Outcome]], n: int = 3) -> dict:
    part = dataclasses.replace(cfg, budget_s=cfg.budget_s / n, min_samples=-(-cfg.min_samples // n))
    pooled: dict[str, Outcome] = {}
    for _ in range(n):
        for name, run in measurers.items():
            out = run(part)
            pooled[name] = pooled[name].merged(out) if name in pooled else out
    return pooled


def _ours(ctx: Context, random_keys: bool) -> dict[str, Outcome]:
    size = ctx.cfg.pick(*STORE_SIZE)
    keys = list(range(size))
    random.Random(7).shuffle(keys)
    # Each side hits its own half of the keys, each key at most once (a real re-run: a
    # sweep), so that neither side finds the access times the other just recorded.
    halves = {True: iter(keys[: size // 2]), False: iter(keys[size // 2 :])}
    per_round = max(1, size // 2 // 3 - 4)  # 3 rounds, 2 warm-up calls each
    with ctx.ours()(store_dir=str(ctx.tmpdir("ours"))) as client:
        for k in keys:
            client.submit(w.f, k)
        client.store.flush_hits()

        def run(on: bool) -> Callable[[Config], Outcome]:
            def go(cfg: Config) -> Outcome:
                _counting(client.store, on)
                try:
                    if random_keys:
                        it = halves[on]
                        return measure(
                            lambda k: client.submit(w.f, k).load(),
                            cfg,
                            prepare=lambda: next(it),
                            max_samples=per_round,
                            min_samples=min(cfg.min_samples, per_round),
                            warmup=2,
                        )
                    return measure(lambda: client.submit(w.f, 1).load(), cfg)
                finally:
                    _counting(client.store, True)

            return go

        pooled = _rounds(ctx.cfg, {"ours": run(True), "ours_touch": run(False)})
        pooled["ours"].extra["store_entries"] = size
        pooled["ours"].extra["hits_counted"] = client.stats()["hits"]
        return pooled


def _disk(ctx: Context, random_keys: bool) -> Outcome:
    diskcache = ctx.require("diskcache")
    cached = diskcache.Cache(str(ctx.tmpdir("diskcache"))).memoize()(w.f)
    size = ctx.cfg.pick(*STORE_SIZE)
    keys = list(range(size))
    random.Random(7).shuffle(keys)
    for k in keys:
        cached(k)
    if not random_keys:
        return measure(lambda: cached(1), ctx.cfg)
    it = iter(keys)
    return measure(
        lambda k: cached(k), ctx.cfg, prepare=lambda: next(it), max_samples=size // 2 - 4, warmup=2
    )


def _scenario(ctx: Context, random_keys: bool) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    try:
        out.update(_ours(ctx, random_keys))
    except Exception:
        out["ours"] = ctx.attempt("ours", lambda: _ours(ctx, random_keys)["ours"])
    out["diskcache"] = ctx.attempt("diskcache", lambda: _disk(ctx, random_keys))
    return out


@hits.scenario(
    "hit_random_counted",
    f"hit, random keys (each once) over {STORE_SIZE[0]:,} entries, hits counted",
    targets=[within("ours_touch", 1.1, "≤ 1.1x before"), info("diskcache")],
)
def hit_random_counted(ctx: Context) -> dict[str, Outcome]:
    return _scenario(ctx, random_keys=True)


@hits.scenario(
    "hit_same_counted",
    "hit of f(1) (same key), hits counted",
    targets=[within("ours_touch", 1.1, "≤ 1.1x before"), info("diskcache")],
)
def hit_same_counted(ctx: Context) -> dict[str, Outcome]:
    return _scenario(ctx, random_keys=False)
