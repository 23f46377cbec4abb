"""Async suite: ``AsyncClient`` hit latency, 1,000 concurrent submits, and the loop kept free.

Our ``AsyncClient`` and cashet 0.5.0's run the same code (``_cashet_async_api``); 0.5.0 runs
it in its own venv through ``peer_cashet050.py``. "Loop lag" is how late a 1 ms ticker fires
while the 1,000 submits run (what other coroutines on the loop feel, queueing behind 1,000
ready tasks included); "longest step" is the longest single event-loop callback in that time
(how long the loop was blocked at once), measured against a 1 ms budget: in wall time
(which on a loaded machine includes waiting for the GIL and for a CPU) and in the loop
thread's own CPU time less the garbage collector's passes (the work cashet did in that
step; GC pauses, which any allocation may trigger, are reported apart).
"""

from __future__ import annotations

from typing import Any

import _cashet_async_api as api
import _workloads as w
from _context import Context
from _harness import Outcome, faster, info, measure, suite, within

async_suite = suite("async", "AsyncClient: awaited hits, 1,000-submit gathers, event-loop lag")

ONE_MS = Outcome(median_ns=api.ONE_MS_NS, p90_ns=api.ONE_MS_NS, min_ns=api.ONE_MS_NS, samples=1)


def ours(ctx: Context, fn: Any) -> Outcome:
    return ctx.attempt("ours", lambda: fn(ctx.ours(), ctx.tmpdir("ours"), ctx.cfg))


def gather_note(ctx: Context, kind: str) -> None:
    n = ctx.cfg.pick(*api.GATHER)
    ctx.note(
        f"{n:,} concurrent client.submit(trivial, i) via asyncio.gather, {kind}, per round "
        "(fresh arguments for misses; the same ones, filled beforehand, for hits)"
    )


def add_extras_note(results: dict[str, Outcome]) -> None:
    """Say each peer's p99/max lag and step (in the JSON too), below the table."""
    for out in results.values():
        if not out.ok or "step_max_ns" not in out.extra:
            continue
        x = out.extra
        lag = (
            f"lag p99 {x['lag_p99_ns'] / 1e6:.2f} ms, max {x['lag_max_ns'] / 1e6:.2f} ms; "
            if x.get("lag_p99_ns") is not None
            else ""
        )
        text = (
            f"{lag}longest step p99 {x['step_p99_ns'] / 1e3:.0f} µs, "
            f"max {x['step_max_ns'] / 1e6:.2f} ms ({x['steps_over_1ms']} of {x['steps']:,} "
            "steps over 1 ms)"
        )
        if "step_cpu_max_ns" in x:
            text += (
                f"; step CPU p99 {x['step_cpu_p99_ns'] / 1e3:.0f} µs, max "
                f"{x['step_cpu_max_ns'] / 1e6:.2f} ms ({x['steps_cpu_over_1ms']} over 1 ms) "
                f"less GC; {x['gc_passes']} GC passes, longest {x['gc_pause_max_ns'] / 1e6:.2f} ms"
            )
        if "submits_per_s" in x:
            text = f"{x['submits_per_s']:,} submits/s; " + text
        out.note = f"{out.note}; {text}" if out.note else text


@async_suite.scenario(
    "async_hit_f1",
    "awaited hit of f(1): await (await submit) .load()",
    targets=[faster("cashet050"), info("sync_client", label="our sync Client")],
    external=["cashet050"],
)
def async_hit_f1(ctx: Context) -> dict[str, Outcome]:
    def sync_hit() -> Outcome:
        with ctx.ours()(store_dir=str(ctx.tmpdir("sync"))) as client:
            client.submit(w.f, 1).load()
            return measure(lambda: client.submit(w.f, 1).load(), ctx.cfg)

    return {
        "ours": ours(ctx, api.hit_f1),
        "sync_client": ctx.attempt("sync_client", sync_hit),
    }


@async_suite.scenario(
    "async_gather1000_miss",
    "1,000 concurrent misses (asyncio.gather): wall time",
    targets=[faster("cashet050")],
    external=["cashet050"],
    annotate=add_extras_note,
)
def async_gather1000_miss(ctx: Context) -> dict[str, Outcome]:
    gather_note(ctx, "misses")
    return {"ours": ours(ctx, api.gather_miss)}


@async_suite.scenario(
    "async_gather1000_hit",
    "1,000 concurrent hits (asyncio.gather): wall time",
    targets=[faster("cashet050")],
    external=["cashet050"],
    annotate=add_extras_note,
)
def async_gather1000_hit(ctx: Context) -> dict[str, Outcome]:
    gather_note(ctx, "hits")
    return {"ours": ours(ctx, api.gather_hit)}


@async_suite.scenario(
    "async_lag_gather1000_miss",
    "loop lag (1 ms ticker) during 1,000 concurrent misses: worst per round",
    targets=[faster("cashet050")],
    external=["cashet050"],
    annotate=add_extras_note,
)
def async_lag_gather1000_miss(ctx: Context) -> dict[str, Outcome]:
    return {"ours": ours(ctx, api.lag_miss)}


@async_suite.scenario(
    "async_lag_gather1000_hit",
    "loop lag (1 ms ticker) during 1,000 concurrent hits: worst per round",
    targets=[faster("cashet050")],
    external=["cashet050"],
    annotate=add_extras_note,
)
def async_lag_gather1000_hit(ctx: Context) -> dict[str, Outcome]:
    return {"ours": ours(ctx, api.lag_hit)}


@async_suite.scenario(
    "async_step_gather1000_miss",
    "longest event-loop step during 1,000 concurrent misses: worst per round",
    targets=[within("baseline", 1.0), info("cashet050")],
    external=["cashet050"],
    baseline="1 ms budget",
    annotate=add_extras_note,
)
def async_step_gather1000_miss(ctx: Context) -> dict[str, Outcome]:
    return {"ours": ours(ctx, api.step_miss), "baseline": ONE_MS}


@async_suite.scenario(
    "async_step_gather1000_hit",
    "longest event-loop step during 1,000 concurrent hits: worst per round",
    targets=[within("baseline", 1.0), info("cashet050")],
    external=["cashet050"],
    baseline="1 ms budget",
    annotate=add_extras_note,
)
def async_step_gather1000_hit(ctx: Context) -> dict[str, Outcome]:
    return {"ours": ours(ctx, api.step_hit), "baseline": ONE_MS}


@async_suite.scenario(
    "async_stepcpu_gather1000_miss",
    "longest loop step, loop-thread CPU less GC passes, during 1,000 concurrent misses",
    targets=[within("baseline", 1.0), info("cashet050")],
    external=["cashet050"],
    baseline="1 ms budget",
    annotate=add_extras_note,
)
def async_stepcpu_gather1000_miss(ctx: Context) -> dict[str, Outcome]:
    return {"ours": ours(ctx, api.step_cpu_miss), "baseline": ONE_MS}


@async_suite.scenario(
    "async_stepcpu_gather1000_hit",
    "longest loop step, loop-thread CPU less GC passes, during 1,000 concurrent hits",
    targets=[within("baseline", 1.0), info("cashet050")],
    external=["cashet050"],
    baseline="1 ms budget",
    annotate=add_extras_note,
)
def async_stepcpu_gather1000_hit(ctx: Context) -> dict[str, Outcome]:
    return {"ours": ours(ctx, api.step_cpu_hit), "baseline": ONE_MS}
