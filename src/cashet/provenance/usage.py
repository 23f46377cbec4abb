"""Is the cache paying off: hits per commit and per function, over any store.

Hits are what a store with the :class:`~cashet.protocols.HitCounter` capability recorded
(written in batches: :func:`with_hits` writes this process's first); a store without it
reports none. Pure reads over the store contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from cashet.models import Commit, TaskStatus
from cashet.protocols import FunctionTotals, HitCounter, HitCounts, Store, supports
from cashet.stores.base import full_store

__all__ = [
    "FunctionUsage",
    "flush_hits",
    "hit_totals",
    "savings_by_function",
    "usage_by_function",
    "with_hits",
]


def _counter(store: Store) -> HitCounter | None:
    if supports(store, HitCounter):
        counter = cast(HitCounter, store)
        counter.flush_hits()  # this process's hits count too
        return counter
    return None


def flush_hits(store: Store) -> None:
    """Write the hits this process recorded on ``store`` (before reading access times)."""
    _counter(store)


def with_hits(store: Store, commits: Sequence[Commit]) -> list[Commit]:
    """``commits`` with ``hits`` and ``last_hit`` filled in from the store (in place).

    Call :func:`flush_hits` before reading the commits, so their ``last_accessed`` is
    current too.
    """
    counter = cast(HitCounter, store) if supports(store, HitCounter) else None
    if counter is None or not commits:
        return list(commits)
    counts = counter.hit_counts([c.hash for c in commits])
    for c in commits:
        found = counts.get(c.hash)
        if found is not None:
            c.hits, c.last_hit = found.hits, found.last_hit
    return list(commits)


def hit_totals(store: Store) -> tuple[int, float]:
    """``(hits, compute seconds saved)`` over the whole store; zeros without the capability."""
    counter = _counter(store)
    return (0, 0.0) if counter is None else counter.hit_totals()


@dataclass(slots=True)
class FunctionUsage:
    """What one function's cache entries cost and saved.

    Attributes:
        func_name: the function's name.
        runs: commits recorded (each one a computation: a miss, or an uncached call).
        hits: calls served from the cache.
        compute_seconds: time spent computing the runs.
        seconds_saved: compute time the hits avoided (each hit: its commit's run time).
        bytes_stored: serialized size of the distinct results kept.
    """

    func_name: str
    runs: int = 0
    hits: int = 0
    compute_seconds: float = 0.0
    seconds_saved: float = 0.0
    bytes_stored: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over all calls (hits + runs); 0 when there were none."""
        calls = self.hits + self.runs
        return self.hits / calls if calls else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-able data (``hit_rate`` included)."""
        return {**asdict(self), "hit_rate": round(self.hit_rate, 4)}


def usage_by_function(store: Store) -> list[FunctionUsage]:
    """One row per function over every commit of ``store``, most time saved first."""
    counter = _counter(store)
    rows: dict[str, FunctionUsage] = {}
    blobs: dict[str, set[str]] = {}
    batch: list[Commit] = []

    def add(commits: list[Commit]) -> None:
        counts: dict[str, HitCounts] = (
            counter.hit_counts([c.hash for c in commits]) if counter is not None else {}
        )
        for c in commits:
            row = rows.get(c.func_name)
            if row is None:
                row = rows[c.func_name] = FunctionUsage(c.func_name)
            if c.status is not TaskStatus.RUNNING:
                row.runs += 1
            seconds = c.compute_seconds or 0.0
            row.compute_seconds += seconds
            found = counts.get(c.hash)
            if found is not None:
                row.hits += found.hits
                row.seconds_saved += found.hits * seconds
            if c.result is not None and c.result.hash not in blobs.setdefault(c.func_name, set()):
                blobs[c.func_name].add(c.result.hash)
                row.bytes_stored += c.result.size

    for commit in full_store(store).iter_commits():
        batch.append(commit)
        if len(batch) >= 500:
            add(batch)
            batch = []
    if batch:
        add(batch)
    return sorted(rows.values(), key=lambda r: (-r.seconds_saved, -r.hits, r.func_name))


def savings_by_function(store: Store) -> list[dict[str, Any]]:
    """Per function ``func_name``, ``runs``, ``hits``, ``hit_rate``, ``seconds_saved``, most
    saved first: from the store's ``FunctionTotals`` when it has them, else from
    :func:`usage_by_function` (every commit read)."""
    if supports(store, FunctionTotals):
        rows = [
            FunctionUsage(name, runs, hits, 0.0, saved, 0)
            for name, runs, hits, saved in cast(FunctionTotals, store).function_totals()
        ]
        rows.sort(key=lambda r: (-r.seconds_saved, -r.hits, r.func_name))
    else:
        rows = usage_by_function(store)
    return [
        {
            "func_name": r.func_name,
            "runs": r.runs,
            "hits": r.hits,
            "hit_rate": round(r.hit_rate, 4),
            "seconds_saved": round(r.seconds_saved, 6),
        }
        for r in rows
    ]
