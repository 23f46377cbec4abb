"""Exceptions and warnings raised by cashet.

Every exception derives from :class:`CashetError`; several also subclass the builtin a
caller would naturally catch::

    CashetError
    ├── TaskError (RuntimeError)          the task function failed (after retries)
    │   ├── TaskTimeoutError (TimeoutError)
    │   └── ResultSerializationError (TypeError)   its result cannot be stored
    ├── StoreError                        the store could not do what was asked
    │   ├── StoreUnavailableError         backend unreachable (Redis down, ...)
    │   ├── ReadOnlyStoreError            a write asked of a read-only store
    │   └── BlobError
    │       ├── BlobMissingError          blob referenced but absent
    │       └── BlobCorruptedError        bytes do not match their hash
    ├── CommitNotFoundError (KeyError)     unknown commit hash or prefix
    ├── AmbiguousHashError (ValueError)   prefix matches several commits
    └── ArchiveError (ValueError)         archive rejected on import

    ClosureWarning (UserWarning)          a value the task reads is left out of the key
    ReadOnlyStoreWarning (UserWarning)    a store opened read-only: misses are not stored
    DamagedStoreWarning (UserWarning)     a store opened with blobs no database knows

All exceptions are picklable: executors ship them between processes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AmbiguousHashError",
    "ArchiveError",
    "BlobCorruptedError",
    "BlobError",
    "BlobMissingError",
    "CashetError",
    "ClosureWarning",
    "CommitNotFoundError",
    "DamagedStoreWarning",
    "ExecutorError",
    "ReadOnlyStoreError",
    "ReadOnlyStoreWarning",
    "ResultSerializationError",
    "StoreError",
    "StoreUnavailableError",
    "TaskError",
    "TaskTimeoutError",
]


class CashetError(Exception):
    """Root of every exception cashet raises."""


class TaskError(CashetError, RuntimeError):
    """A task function raised (or timed out) and every retry was used up.

    Attributes:
        func_name: name of the task function.
        traceback_text: the formatted traceback of the last failed attempt.
        attempts: how many attempts were made.
    """

    def __init__(
        self,
        message: str,
        *,
        func_name: str | None = None,
        traceback_text: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.func_name = func_name
        self.traceback_text = traceback_text
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_task_error,
            (type(self), self.message, self.func_name, self.traceback_text, self.attempts),
        )

    def __str__(self) -> str:
        if self.traceback_text:
            return f"{self.message}\n\nOriginal traceback:\n{self.traceback_text.rstrip()}"
        return self.message


def _rebuild_task_error(
    cls: type[TaskError],
    message: str,
    func_name: str | None,
    traceback_text: str | None,
    attempts: int,
) -> TaskError:
    return cls(message, func_name=func_name, traceback_text=traceback_text, attempts=attempts)


class TaskTimeoutError(TaskError, TimeoutError):
    """A task attempt ran longer than its ``timeout``."""


class ResultSerializationError(TaskError, TypeError):
    """A task returned a value its serializer cannot turn into bytes (an open file, a
    lambda, a lock, ...): nothing is stored. The serializer's error is ``__cause__``."""


class ExecutorError(CashetError, RuntimeError):
    """An executor could not ship a call to its workers or get its answer back: a store
    workers cannot reach, a function or argument that cannot be sent, a worker that cannot
    load it, an engine that lost the task. The call's lease is released."""


class StoreError(CashetError):
    """The store failed to carry out an operation."""


class StoreUnavailableError(StoreError):
    """The store's backend cannot be reached (connection refused, dropped, ...)."""


class ReadOnlyStoreError(StoreError):
    """A write (``rm``, ``gc``, ``import``, a repair) was asked of a store opened read-only.

    Computing a miss is not such a write: a read-only store returns its result unstored.
    """


class BlobError(StoreError):
    """A stored blob cannot be returned."""

    def __init__(self, message: str, blob_hash: str = "") -> None:
        super().__init__(message)
        self.blob_hash = blob_hash

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.blob_hash))


class BlobMissingError(BlobError, ValueError):
    """A blob that a commit references is not in the store (also a ``ValueError``, as the
    published stores raised)."""


class BlobCorruptedError(BlobError):
    """A blob's bytes no longer match its content hash."""


class CommitNotFoundError(CashetError, KeyError):
    """No commit has the given hash or hash prefix.

    Also a ``KeyError``: the published cashet raised ``KeyError`` for an unknown hash, and
    code written against it catches that (issue 12).
    """

    def __str__(self) -> str:
        # KeyError's str() quotes its argument as a key; this is a message.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class AmbiguousHashError(CashetError, ValueError):
    """A hash prefix matches more than one commit."""

    def __init__(self, prefix: str, candidates: Sequence[str] = ()) -> None:
        self.prefix = prefix
        self.candidates = list(candidates)
        shown = ", ".join(self.candidates[:10])
        more = "" if len(self.candidates) <= 10 else f" (and {len(self.candidates) - 10} more)"
        super().__init__(f"Ambiguous prefix {prefix!r}: it matches {shown}{more}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.prefix, self.candidates))


class ArchiveError(CashetError, ValueError):
    """An archive was rejected on import; the store is unchanged."""


class ClosureWarning(UserWarning):
    """A value the task reads (a global, a closure cell, a class attribute, a bound method's
    instance, a default) cannot be hashed and is left out of its cache key; the message names
    it and how to silence it (``__cashet_hash__``, or ``cashet.hashing.ignore``)."""


class ReadOnlyStoreWarning(UserWarning):
    """A store was opened read-only because its directory cannot be written: hits are
    served, misses are computed and returned but not stored. Said once per store; open it
    with ``readonly=True`` to say you know (no warning then)."""


class DamagedStoreWarning(UserWarning):
    """A store opened with damage it cannot repair by itself (its database is gone or
    empty while ``objects/`` still holds blob files); ``cashet doctor --repair`` does."""
