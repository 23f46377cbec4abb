"""Damaged commits in Redis set aside (``P quarantine``, see :mod:`cashet.stores.quarantine`),
free of IO like the rest of :mod:`cashet.stores.redis.ops`."""

from __future__ import annotations

import json
import time
from contextlib import suppress
from typing import Any

from cashet.errors import StoreError
from cashet.stores.quarantine import COMMIT, QuarantineEntry, record_json, report
from cashet.stores.redis.calls import OpFlow, RedisCall, text
from cashet.stores.redis.calls import run_script as _run
from cashet.stores.redis.keys import QUARANTINE_COMMIT, Keys

__all__ = ["DamageOps"]


class DamageOps:
    """The quarantine operations of :class:`~cashet.stores.redis.ops.Ops`."""

    keys: Keys
    prefix: str
    _templates: Any

    def where(self) -> str:
        raise NotImplementedError

    def quarantine(self, h: str, body: Any, reason: str, kind: str = COMMIT) -> OpFlow[None]:
        """Set a damaged commit aside (moved out of the store, its body kept), or note
        that an index led a lookup to a commit of another call (``kind`` ``INDEX``)."""
        record = None
        if body is not None and kind == COMMIT:
            record = record_json(("b",), (body,))
        entry = QuarantineEntry(h, kind, reason, time.time(), record)
        value = json.dumps(
            {"kind": kind, "reason": reason, "found_at": entry.found_at, "record": record}
        )
        stored = b"" if body is None or kind != COMMIT else body
        try:  # best effort: a store that refuses writes still answers with a miss
            yield _run(
                f"quarantine commit {h[:12]}",
                QUARANTINE_COMMIT,
                (),
                self.prefix,
                h,
                stored,
                value,
                f"{kind}:{h}",
            )
        except StoreError as exc:
            entry = QuarantineEntry(h, kind, f"{reason} (not recorded: {exc})", entry.found_at)
        self._templates.pop(h, None)
        report(self.where(), entry)

    def quarantined(self) -> OpFlow[list[QuarantineEntry]]:
        """Every entry set aside, oldest first."""
        flat = yield RedisCall("read the quarantine", ("HGETALL", self.keys.quarantine))
        pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
        out = []
        for field, value in pairs:
            with suppress(ValueError, TypeError, KeyError):
                d = json.loads(value)
                h = text(field).partition(":")[2]
                out.append(
                    QuarantineEntry(h, d["kind"], d["reason"], float(d["found_at"]), d["record"])
                )
        return sorted(out, key=lambda e: e.found_at)
