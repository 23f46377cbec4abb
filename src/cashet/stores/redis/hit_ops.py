"""Hits counted in Redis (the ``HitCounter`` capability), free of IO like the rest of
:mod:`cashet.stores.redis.ops`: one script call per batch (``add_hits.lua``: the counts on
each commit's hash, the totals in ``P stats:commit``, the LRU index moved forward), run once
per token so a resent batch adds nothing."""

from __future__ import annotations

import secrets
from typing import Any

from cashet.protocols import HitCounts
from cashet.stores.redis.calls import OpFlow, RedisCall
from cashet.stores.redis.calls import run_script as _run
from cashet.stores.redis.keys import ADD_HITS, HIT_COUNTS, Keys, from_us

__all__ = ["HitOps"]


class HitOps:
    """The hit-counting operations of :class:`~cashet.stores.redis.ops.Ops`."""

    keys: Keys
    prefix: str

    def add_hits(self, batch: dict[str, list[Any]]) -> OpFlow[None]:
        args: list[Any] = []
        for h, (n, last, saved) in batch.items():
            args += [h, int(n), int(last * 1e6), repr(float(saved))]
        yield _run(
            f"record {len(batch)} hits", ADD_HITS, (), self.prefix, secrets.token_hex(8), *args
        )

    def hit_counts(self, hashes: list[str]) -> OpFlow[dict[str, HitCounts]]:
        found: dict[str, HitCounts] = {}
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            flat = yield _run("read hit counts", HIT_COUNTS, (), self.prefix, *chunk)
            for j, h in enumerate(chunk):
                n, last = flat[2 * j], flat[2 * j + 1]
                if n not in (b"", ""):
                    last_hit = None if last in (b"", "") else from_us(int(last))
                    found[h] = HitCounts(int(n), last_hit)
        return found

    def hit_totals(self) -> OpFlow[tuple[int, float]]:
        reply = yield RedisCall(
            "read hit totals", ("HMGET", self.keys.stats_commit, "hits", "hits_saved")
        )
        hits, saved = reply
        return int(hits or 0), float(saved or 0.0)
