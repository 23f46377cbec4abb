"""Provenance queries over a sync ``Store``: hash resolution, diff, GC arguments.

Shared by ``Client``, the CLI and the HTTP server so each is a thin shell.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from cashet.errors import AmbiguousHashError, CommitNotFoundError
from cashet.models import Commit, ObjectRef, TaskStatus, utcnow
from cashet.protocols import Store

__all__ = ["diff_commits", "gc_cutoff", "resolve_commit"]

_HEX = re.compile(r"^[0-9a-f]+$")


def resolve_commit(store: Store, hash_or_prefix: str) -> Commit:
    """Return the commit named by a full hash or a unique prefix.

    Raises:
        ValueError: the text is not a hex hash prefix.
        CommitNotFoundError: nothing matches.
        AmbiguousHashError: several commits match (the candidates are listed).
    """
    if not isinstance(hash_or_prefix, str):
        raise TypeError(f"a commit hash must be a str, not {type(hash_or_prefix).__name__}")
    text = hash_or_prefix.strip().lower()
    if not text or not _HEX.match(text):
        raise ValueError(f"{hash_or_prefix!r} is not a commit hash (expected hex digits)")
    if len(text) == 64:
        commit = store.get_commit(text)
        if commit is None:
            raise CommitNotFoundError(f"no commit {text}")
        return commit
    matches = store.resolve_prefix(text, limit=21)
    if not matches:
        raise CommitNotFoundError(f"no commit matches {text!r}")
    if len(matches) > 1:
        raise AmbiguousHashError(text, matches)
    commit = store.get_commit(matches[0])
    if commit is None:  # deleted between the two queries
        raise CommitNotFoundError(f"no commit matches {text!r}")
    return commit


def gc_cutoff(older_than: timedelta) -> Any:
    """Validate a GC age and return the cut-off time."""
    if not isinstance(older_than, timedelta):
        raise TypeError(f"older_than must be a datetime.timedelta, not {type(older_than).__name__}")
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    return utcnow() - older_than


def diff_commits(
    a: Commit, b: Commit, load_blob: Callable[[ObjectRef], bytes] | None = None
) -> dict[str, Any]:
    """Compare two commits: what changed in function, arguments and output."""
    out_a = a.result.hash if a.result else None
    out_b = b.result.hash if b.result else None
    source_diff = "".join(
        difflib.unified_diff(
            a.task_def.func_source.splitlines(keepends=True),
            b.task_def.func_source.splitlines(keepends=True),
            fromfile=f"{a.func_name}@{a.short_hash}",
            tofile=f"{b.func_name}@{b.short_hash}",
        )
    )
    args_diff = "".join(
        difflib.unified_diff(
            _lines(a.task_def.args_snapshot),
            _lines(b.task_def.args_snapshot),
            fromfile=f"args@{a.short_hash}",
            tofile=f"args@{b.short_hash}",
        )
    )
    return {
        "hash_a": a.hash,
        "hash_b": b.hash,
        "func_changed": a.task_def.func_hash != b.task_def.func_hash,
        "args_changed": a.task_def.args_hash != b.task_def.args_hash,
        "output_changed": out_a != out_b,
        "status_changed": a.status != b.status,
        "func_name_a": a.func_name,
        "func_name_b": b.func_name,
        "output_a": out_a,
        "output_b": out_b,
        "status_a": a.status.value,
        "status_b": b.status.value,
        "source_diff": source_diff,
        "args_diff": args_diff,
    }


def _lines(text: str) -> list[str]:
    return [line + "\n" for line in text.replace("), {", "),\n{").replace(", ", ",\n").split("\n")]


def parse_status(status: TaskStatus | str | None) -> TaskStatus | None:
    """Return ``status`` as a ``TaskStatus`` (``ValueError`` listing valid values)."""
    return None if status is None else TaskStatus.parse(status)
