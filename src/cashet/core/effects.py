"""The effects a call flow yields, and what an ``Execute`` effect answers.

An effect is a request from the IO-free flow (:mod:`cashet.core.flow`) to its driver
(:mod:`cashet.executors._drive`): "look this fingerprint up", "claim this lease", "run the
function". Each is a frozen, slotted value; :data:`Effect` is their closed union, so a
driver dispatches with ``match`` and ``typing.assert_never`` proves it handles every one.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from cashet.models import Commit, Lease, ObjectRef

__all__ = [
    "Claim",
    "Effect",
    "Execute",
    "LatestFor",
    "Lookup",
    "Outcome",
    "PutCommit",
    "Record",
    "Release",
    "Serialize",
    "Sleep",
    "Touch",
    "WaitRelease",
]


@dataclass(frozen=True, slots=True)
class Lookup:
    """Answer the newest completed, cacheable, unexpired commit for ``fingerprint`` or None.

    A commit with a result answered here is served as a hit: a store that counts hits (the
    ``HitCounter`` capability) has it counted then, in memory. Its ``Touch`` is for the
    stores that do not.

    ``owner``: the lease this call has just taken (the lookup after the claim): a store that
    knew, when it granted that lease, that nothing could answer the fingerprint may answer
    ``None`` without looking (SQLite's ``known_miss``).
    """

    fingerprint: str
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class LatestFor:
    """Answer the newest commit of any status for ``fingerprint`` (the parent), or None."""

    fingerprint: str


@dataclass(frozen=True, slots=True)
class Touch:
    """Record an access to commit ``hash`` at ``when`` (a failure is logged, not raised)."""

    hash: str
    when: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """Try to take ``lease`` on ``fingerprint``; answer True when taken."""

    fingerprint: str
    lease: Lease


@dataclass(frozen=True, slots=True)
class WaitRelease:
    """Block until the lease on ``fingerprint`` is released or dead, at most ``timeout`` s."""

    fingerprint: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Release:
    """Give the lease on ``fingerprint`` held by ``owner`` back; answer ``None``, or the
    error of a release that failed (the driver then retries it in the background)."""

    fingerprint: str
    owner: str


@dataclass(frozen=True, slots=True)
class Execute:
    """Run the task function once (resolving upstream results); answer an :class:`Outcome`.

    While it runs the driver keeps the lease alive (``lease`` is None when no lease is held).
    """

    attempt: int
    timeout: float | None
    lease: Lease | None
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next attempt."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Serialize:
    """Turn ``value`` into bytes (or chunks) with the client's serializer."""

    value: Any


@dataclass(frozen=True, slots=True)
class PutCommit:
    """Store ``commit``."""

    commit: Commit


@dataclass(frozen=True, slots=True)
class Record:
    """Store the result ``data``, record ``build(blob_ref)`` and release the lease.

    Answer the recorded commit. Stores do it in one step where they can (``put_result``:
    one transaction); :func:`cashet.stores.base.full_store` gives every other store the
    default (``put_blob`` + ``put_commit`` + ``release_claim``).
    """

    data: Any
    build: Callable[[ObjectRef], Commit]
    release: tuple[str, str] | None


Effect: TypeAlias = (
    Lookup
    | Touch
    | Claim
    | WaitRelease
    | Release
    | Execute
    | Sleep
    | Serialize
    | Record
    | LatestFor
    | PutCommit
)


@dataclass(slots=True)
class Outcome:
    """What one attempt produced: a value, or an exception with its formatted traceback."""

    value: Any = None
    error: BaseException | None = None
    traceback_text: str = ""
    seconds: float = 0.0

    @classmethod
    def failed(cls, exc: BaseException, seconds: float = 0.0) -> Outcome:
        """Return the outcome of an attempt that raised ``exc`` after ``seconds``."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(error=exc, traceback_text=text, seconds=seconds)
