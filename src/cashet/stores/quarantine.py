"""Damaged metadata set aside: what a store found it could not trust, for a doctor to report.

Stores verify commits like blobs (:func:`cashet.hashing.commits.verified_commit`): a commit
record that does not decode, does not hash to the hash it is kept under, or contradicts its
store's indexes is never returned. It is a miss (the next ``submit`` recomputes), it is left
out of ``log``, ``history`` and ``export``, and it is *quarantined*: moved out of the store's
commits into a quarantine list (nothing is deleted), and logged once. A lookup that an index
led to a commit of another call is noted there too (the commit itself stays).

A store that keeps such a list has the :class:`QuarantineLog` capability, checked on its
class (``issubclass(type(store), QuarantineLog)``) like every other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cashet._log import log
from cashet.models import Commit, TaskStatus

__all__ = [
    "COMMIT",
    "INDEX",
    "QuarantineEntry",
    "QuarantineLog",
    "hit_fingerprint",
    "record_json",
    "report",
]

#: The commit record was moved out of the store's commits.
COMMIT = "commit"
#: An index led a lookup to this commit, which belongs to another call (the commit stays).
INDEX = "index"


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One damaged entry a store set aside.

    Attributes:
        hash: the commit hash the entry was kept under, as found (it may be the damage).
        kind: ``"commit"`` (the record was moved out: no read returns it any more) or
            ``"index"`` (an index points a lookup at this commit of another call).
        reason: what was wrong, in words.
        found_at: when it was found (UTC epoch seconds).
        record: the damaged record as found (JSON text), or ``None``.
    """

    hash: str
    kind: str
    reason: str
    found_at: float
    record: str | None = None


@runtime_checkable
class QuarantineLog(Protocol):
    """A store that sets damaged metadata aside and can list it."""

    def quarantined(self) -> list[QuarantineEntry]:
        """Every entry set aside, oldest first."""
        ...


def record_json(names: Sequence[str], values: Sequence[Any]) -> str:
    """A damaged record as JSON text, whatever types its fields came back as."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return {"bytes": bytes(value).hex()}
        return value

    return json.dumps(
        {name: plain(value) for name, value in zip(names, values, strict=False)},
        default=repr,  # ASCII: text that was not UTF-8 is kept as escapes
    )


def report(where: str, entry: QuarantineEntry) -> None:
    """Log a quarantined entry (a warning: the cache recomputes, the data is kept)."""
    what = "commit" if entry.kind == COMMIT else "index entry for commit"
    log.warning(
        "%s: %s %s is damaged (%s); quarantined, the call will be recomputed",
        where,
        what,
        entry.hash[:16],
        entry.reason,
    )


def hit_fingerprint(template: Commit) -> str:
    """The fingerprint a verified commit answers as a cache hit by its own content: its
    call's when it completed and may be cached, else ``""`` (none). Computed once per
    decoded commit; a lookup compares it with the fingerprint asked for, whatever the
    store's indexes said."""
    td = template.task_def
    return td.fingerprint if template.status is TaskStatus.COMPLETED and td.cache else ""
