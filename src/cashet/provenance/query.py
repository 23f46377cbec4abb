"""Provenance queries over a sync ``Store``: hash resolution and query checks.

Shared by ``Client`` (and through it the CLI and the HTTP server). Everything here is pure
apart from the few store reads in :func:`resolve_commit` and :func:`resolve_result`, which
are indexed point lookups (never a scan).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from cashet.errors import AmbiguousHashError, CommitNotFoundError
from cashet.models import Commit, ObjectRef, TaskStatus, utcnow
from cashet.protocols import Store
from cashet.stores.base import full_store
from cashet.stores.quarantine import COMMIT, QuarantineLog

__all__ = [
    "require_commit",
    "check_tag_query",
    "gc_cutoff",
    "parse_status",
    "resolve_commit",
    "resolve_result",
]

_HEX = re.compile(r"^[0-9a-f]+$")
#: A prefix may match this many commits before the error stops listing them.
_MAX_CANDIDATES = 20


def _normalize_hash(text: object, what: str = "commit hash") -> str:
    if not isinstance(text, str):
        raise TypeError(f"a {what} must be a str, not {type(text).__name__}")
    norm = text.strip().lower()
    if not norm or len(norm) > 64 or not _HEX.match(norm):
        raise ValueError(f"{text!r} is not a {what} (expected 1-64 hex digits)")
    return norm


def resolve_commit(store: Store, hash_or_prefix: str, *, by_result: bool = False) -> Commit:
    """Return the commit named by a full hash or a unique prefix.

    Expired commits are found too: they stay inspectable until ``gc`` deletes them.

    Args:
        store: the store to search.
        hash_or_prefix: a commit hash or a unique prefix of one (case and surrounding
            spaces are ignored).
        by_result: also accept the full hash of a result blob (what ``ref.hash`` prints,
            as in the README's notebook use case): the newest commit that produced it is
            returned (the store's ``ResultIndex`` capability).

    Raises:
        TypeError: ``hash_or_prefix`` is not a string.
        ValueError: the text is not a hex hash prefix.
        CommitNotFoundError: nothing matches.
        AmbiguousHashError: several commits match (the candidates are listed).
    """
    text = _normalize_hash(hash_or_prefix)
    if len(text) == 64:
        commit = store.get_commit(text)
        if commit is None and by_result:
            commit = _newest_with_result(store, text)
        if commit is None:
            hint = ""
            if full_store(store).has_blob(text):
                hint = " (that is a result blob hash: `get` loads it; use ref.commit_hash)"
            elif reason := _quarantined(store, text):
                hint = f" (it was found damaged and set aside in the store's quarantine: {reason})"
            raise CommitNotFoundError(f"no commit {text}{hint}")
        return commit
    matches = full_store(store).resolve_prefix(text, limit=_MAX_CANDIDATES + 1)
    if not matches:
        raise CommitNotFoundError(f"no commit matches {text!r}")
    if len(matches) > 1:
        raise AmbiguousHashError(text, matches)
    commit = store.get_commit(matches[0])
    if commit is None:  # deleted between the two queries
        raise CommitNotFoundError(f"no commit matches {text!r}")
    return commit


def _quarantined(store: Store, commit_hash: str) -> str:
    """Why the store set the commit aside as damaged, or ``""`` (not quarantined)."""
    if not issubclass(type(store), QuarantineLog):
        return ""
    entries = store.quarantined()  # type: ignore[attr-defined]
    return next((e.reason for e in entries if e.hash == commit_hash and e.kind == COMMIT), "")


def _newest_with_result(store: Store, blob_hash: str) -> Commit | None:
    # The ResultIndex capability: indexed on SQLite, a scan of iter_commits elsewhere.
    found = full_store(store).find_by_result(blob_hash, limit=1)
    return found[0] if found else None


def resolve_result(store: Store, hash_or_prefix: str) -> tuple[ObjectRef, Commit | None]:
    """Return the result blob named by a commit hash (or unique prefix) or a full blob hash.

    A commit hash wins; a full 64-digit hash that names no commit but a stored blob (what
    ``ref.hash`` prints, as in the README's notebook use case) names that blob directly.

    Returns:
        The blob and the commit that recorded it (``None`` when named by blob hash).

    Raises:
        CommitNotFoundError: nothing matches, or the commit has no result (a failed run).
        AmbiguousHashError, ValueError, TypeError: as :func:`resolve_commit`.
    """
    try:
        commit = resolve_commit(store, hash_or_prefix)
    except CommitNotFoundError:
        text = _normalize_hash(hash_or_prefix)
        if len(text) == 64 and full_store(store).has_blob(text):
            # Stores address blobs by hash alone; the size is not known here.
            return ObjectRef(text, 0), None
        raise
    if commit.result is None:
        detail = f": {_last_line(commit.error)}" if commit.error else ""
        raise CommitNotFoundError(
            f"commit {commit.short_hash} has no result (status {commit.status.value}{detail})"
        )
    return commit.result, commit


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def parse_status(status: TaskStatus | str | None) -> TaskStatus | None:
    """Return ``status`` as a ``TaskStatus`` (``ValueError`` listing valid values)."""
    return None if status is None else TaskStatus.parse(status)


def check_tag_query(tags: object, *, allow_empty: bool = True) -> dict[str, str | None]:
    """Check a tag query (``{key: value}``, ``{key: None}`` = key present) and copy it.

    Raises:
        TypeError: ``tags`` is not a mapping of strings to strings or ``None``.
        ValueError: ``tags`` is empty and ``allow_empty`` is false.
    """
    if not isinstance(tags, Mapping):
        raise TypeError(f"tags must be a mapping of str to str or None, not {type(tags).__name__}")
    out: dict[str, str | None] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise TypeError(
                f"tags must map str to str or None; got {key!r}: {value!r}"
                " (None matches any value of the key)"
            )
        out[key] = value
    if not out and not allow_empty:
        raise ValueError("an empty tag query matches every commit; refusing to use it here")
    return out


def gc_cutoff(older_than: timedelta) -> datetime:
    """Validate a GC age and return the cut-off time."""
    if not isinstance(older_than, timedelta):
        raise TypeError(f"older_than must be a datetime.timedelta, not {type(older_than).__name__}")
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    return utcnow() - older_than


def require_commit(commit: Commit | None, hash: str) -> Commit:
    """Return ``commit``, or raise the not-found error a shell reports for ``hash``.

    ``Client.show`` returns ``None`` for an unknown hash (as the spec's store does); the CLI
    and the server still answer "not found" (exit 1, HTTP 404).

    Raises:
        CommitNotFoundError: ``commit`` is ``None``.
    """
    if commit is None:
        raise CommitNotFoundError(f"no commit matches {hash!r}")
    return commit
