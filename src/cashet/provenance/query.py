"""Provenance queries over a sync ``Store``: hash resolution, diffs, views, query checks.

Shared by ``Client``, the CLI and the HTTP server so each stays a thin shell. Everything
here is pure apart from the few store reads in :func:`resolve_commit` and
:func:`resolve_result`, which are indexed point lookups (never a scan).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cashet.errors import AmbiguousHashError, CommitNotFoundError
from cashet.models import Commit, ObjectRef, TaskStatus, utcnow
from cashet.protocols import Store
from cashet.stores.base import full_store

__all__ = [
    "commit_view",
    "diff_args",
    "diff_commits",
    "gc_cutoff",
    "parse_status",
    "resolve_commit",
    "resolve_result",
    "validate_tags",
]

_HEX = re.compile(r"^[0-9a-f]+$")
#: A prefix may match this many commits before the error stops listing them.
_MAX_CANDIDATES = 20
#: At most this many entries in a structural args diff (snapshots are bounded anyway).
_MAX_ARG_CHANGES = 200


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
            if store.has_blob(text):
                hint = " (that is a result blob hash: `get` loads it; use ref.commit_hash)"
            raise CommitNotFoundError(f"no commit {text}{hint}")
        return commit
    matches = store.resolve_prefix(text, limit=_MAX_CANDIDATES + 1)
    if not matches:
        raise CommitNotFoundError(f"no commit matches {text!r}")
    if len(matches) > 1:
        raise AmbiguousHashError(text, matches)
    commit = store.get_commit(matches[0])
    if commit is None:  # deleted between the two queries
        raise CommitNotFoundError(f"no commit matches {text!r}")
    return commit


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
        if len(text) == 64 and store.has_blob(text):
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


def validate_tags(tags: object, *, allow_empty: bool = True) -> dict[str, str | None]:
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


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def commit_view(
    commit: Commit, *, full: bool = True, now: datetime | None = None
) -> dict[str, Any]:
    """Return a JSON-able description of ``commit`` (what ``show --json`` prints).

    Args:
        commit: the commit.
        full: include the function source (``log`` leaves it out).
        now: the time against which ``expired`` is judged (default: now).
    """
    td = commit.task_def
    view: dict[str, Any] = {
        "hash": commit.hash,
        "func_name": td.func_name,
        "module": td.module,
        "status": commit.status.value,
        "created_at": _iso(commit.created_at),
        "last_accessed": _iso(commit.last_accessed),
        "expires_at": _iso(commit.expires_at),
        "expired": commit.is_expired(now),
        "parent_hash": commit.parent_hash,
        "result": None
        if commit.result is None
        else {"hash": commit.result.hash, "size": commit.result.size},
        "compute_seconds": commit.compute_seconds,
        "tags": dict(commit.tags),
        "error": commit.error,
        "fingerprint": td.fingerprint,
        "func_hash": td.func_hash,
        "args_hash": td.args_hash,
        "args_snapshot": td.args_snapshot,
        "input_hashes": list(commit.input_hashes),
        "options": {
            "cache": td.cache,
            "force": td.force,
            "retries": td.retries,
            "timeout": td.timeout,
            "ttl": td.ttl,
        },
    }
    if full:
        view["func_source"] = td.func_source
    return view


# --- diff ---------------------------------------------------------------------------------


def diff_commits(a: Commit, b: Commit) -> dict[str, Any]:
    """Compare two commits: what changed in function, arguments and output.

    Returns:
        ``func_changed``, ``args_changed``, ``output_changed`` and ``status_changed``
        (booleans, by hash), both sides' names, statuses, outputs (result blob hashes) and
        creation times, ``source_diff`` (a unified diff of the two sources, ``""`` when
        equal) and ``args_diff`` (see :func:`diff_args`).
    """
    out_a = a.result.hash if a.result else None
    out_b = b.result.hash if b.result else None
    source_diff = "".join(
        difflib.unified_diff(
            _keep_ends(a.task_def.func_source),
            _keep_ends(b.task_def.func_source),
            fromfile=f"{a.func_name}@{a.short_hash}",
            tofile=f"{b.func_name}@{b.short_hash}",
        )
    )
    args_changed = a.task_def.args_hash != b.task_def.args_hash
    args_diff = (
        diff_args(a.task_def.args_snapshot, b.task_def.args_snapshot) if args_changed else []
    )
    return {
        "hash_a": a.hash,
        "hash_b": b.hash,
        "func_changed": a.task_def.func_hash != b.task_def.func_hash,
        "args_changed": args_changed,
        "output_changed": out_a != out_b,
        "status_changed": a.status != b.status,
        "func_name_a": a.func_name,
        "func_name_b": b.func_name,
        "output_a": out_a,
        "output_b": out_b,
        "status_a": a.status.value,
        "status_b": b.status.value,
        "created_at_a": _iso(a.created_at),
        "created_at_b": _iso(b.created_at),
        "source_diff": source_diff,
        "args_diff": args_diff,
    }


def _keep_ends(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def diff_args(snapshot_a: str, snapshot_b: str) -> list[dict[str, Any]]:
    """Compare two argument snapshots structurally.

    A snapshot is the readable ``(args, kwargs)`` text a commit stores, e.g.
    ``(('2024-01-01',), {'model': 'v3'})``. Both are parsed into nested containers
    (tolerating truncated or unparseable parts, which compare as text) and compared
    element by element.

    Returns:
        One entry per difference, in order: ``{"path": "kwargs['model']", "change":
        "changed" | "added" | "removed", "a": "'v3'", "b": "'v4'"}`` (``a`` is ``None``
        for an addition, ``b`` for a removal). Empty when the snapshots are equal.
    """
    if snapshot_a == snapshot_b:
        return []
    out: list[dict[str, Any]] = []
    root_a, root_b = _parse(snapshot_a), _parse(snapshot_b)
    split_a, split_b = _split_call(root_a), _split_call(root_b)
    if split_a is not None and split_b is not None:
        _diff(split_a[0], split_b[0], "args", out)
        _diff(split_a[1], split_b[1], "kwargs", out)
    else:
        _diff(root_a, root_b, "args", out)
    if len(out) > _MAX_ARG_CHANGES:
        more = len(out) - _MAX_ARG_CHANGES
        out = out[:_MAX_ARG_CHANGES]
        out.append({"path": "…", "change": f"{more} more", "a": None, "b": None})
    return out


@dataclass(slots=True)
class _Node:
    """A parsed value: its text, and for a container its opener, head and items.

    ``head`` is the text before the opener (``Point`` in ``Point(x=1)``); an item's key is
    the text of a dict key or a keyword name, ``None`` for a positional item.
    """

    text: str
    opener: str = ""
    head: str = ""
    items: list[tuple[str | None, _Node]] = field(default_factory=list)


_PAIRS = {"(": ")", "[": "]", "{": "}"}
_KWARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=(?!=)")


def _parse(text: str) -> _Node:
    parser = _Parser(text)
    node = parser.value("")
    if parser.i < len(text):  # trailing text (e.g. a stray closer): compare as text
        return _Node(text.strip())
    return node


class _Parser:
    """A forgiving reader of repr-like text: brackets, quotes, ``key: value``, ``k=v``."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def value(self, stops: str) -> _Node:
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i].isspace():
            self.i += 1
        start = self.i
        node: _Node | None = None
        while self.i < n:
            c = s[self.i]
            if c in "'\"":
                self._skip_string()
            elif c == "<" and self.i == start:
                self._skip_angle()
            elif c in _PAIRS:
                if node is None:
                    head = s[start : self.i].strip()
                    opener = c
                    self.i += 1
                    node = _Node("", opener, head, self._items(_PAIRS[c]))
                else:
                    self._skip_balanced()
            elif c in stops or c in ")]}":
                break
            else:
                self.i += 1
        text = s[start : self.i].strip()
        if node is None:
            return _Node(text)
        node.text = text
        return node

    def _items(self, close: str) -> list[tuple[str | None, _Node]]:
        s, n = self.s, len(self.s)
        items: list[tuple[str | None, _Node]] = []
        while True:
            while self.i < n and s[self.i].isspace():
                self.i += 1
            if self.i >= n:
                return items  # truncated: close what is open
            if s[self.i] == close:
                self.i += 1
                return items
            key: str | None = None
            kw = _KWARG.match(s, self.i)
            if kw is not None:
                key = s[self.i : kw.end() - 1].strip()
                self.i = kw.end()
                item = self.value(",")
            else:
                item = self.value(",:")
                if self.i < n and s[self.i] == ":":
                    self.i += 1
                    key = item.text
                    item = self.value(",")
            items.append((key, item))
            if self.i < n and s[self.i] == ",":
                self.i += 1
            elif self.i < n and s[self.i] != close:
                self.i += 1  # a closer of another kind: skip it, keep going

    def _skip_string(self) -> None:
        s, n = self.s, len(self.s)
        quote = s[self.i]
        triple = s.startswith(quote * 3, self.i)
        end = quote * 3 if triple else quote
        self.i += len(end)
        while self.i < n:
            if s[self.i] == "\\":
                self.i += 2
            elif s.startswith(end, self.i):
                self.i += len(end)
                return
            else:
                self.i += 1
        self.i = n

    def _skip_angle(self) -> None:
        depth = 0
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in "'\"":
                self._skip_string()
                continue
            depth += (c == "<") - (c == ">")
            self.i += 1
            if depth == 0:
                return

    def _skip_balanced(self) -> None:
        depth = 0
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in "'\"":
                self._skip_string()
                continue
            if c in _PAIRS:
                depth += 1
            elif c in ")]}":
                depth -= 1
            self.i += 1
            if depth == 0:
                return


def _split_call(root: _Node) -> tuple[_Node, _Node] | None:
    """``(args_tuple, kwargs_dict)`` -> its two parts, else ``None``."""
    if root.opener != "(" or root.head or not 1 <= len(root.items) <= 2:
        return None
    (k1, args), (k2, kwargs) = (*root.items, (None, _Node("{}", "{")))[:2]
    if k1 is None and k2 is None and args.opener == "(" and kwargs.opener == "{":
        return args, kwargs  # one item only when the snapshot was cut short
    return None


def _child_path(parent: _Node, path: str, key: str | None, index: int) -> str:
    if key is None:
        return f"{path}[{index}]"
    if parent.opener == "{":
        return f"{path}[{key}]"
    return f"{path}.{key}"


def _diff(a: _Node, b: _Node, path: str, out: list[dict[str, Any]]) -> None:
    if a.text == b.text or len(out) > _MAX_ARG_CHANGES:
        return
    if not a.opener or a.opener != b.opener or a.head != b.head:
        out.append({"path": path, "change": "changed", "a": a.text, "b": b.text})
        return
    pos_a = [n for k, n in a.items if k is None]
    pos_b = [n for k, n in b.items if k is None]
    matcher = difflib.SequenceMatcher(
        a=[n.text for n in pos_a], b=[n.text for n in pos_b], autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                _diff(pos_a[i], pos_b[j], _child_path(a, path, None, j), out)
            continue
        for i in range(i1, i2):
            p = _child_path(a, path, None, i)
            out.append({"path": p, "change": "removed", "a": pos_a[i].text, "b": None})
        for j in range(j1, j2):
            p = _child_path(b, path, None, j)
            out.append({"path": p, "change": "added", "a": None, "b": pos_b[j].text})
    keyed_a = {k: n for k, n in a.items if k is not None}
    keyed_b = {k: n for k, n in b.items if k is not None}
    for key, node in keyed_a.items():
        other = keyed_b.get(key)
        if other is None:
            p = _child_path(a, path, key, 0)
            out.append({"path": p, "change": "removed", "a": node.text, "b": None})
        else:
            _diff(node, other, _child_path(a, path, key, 0), out)
    for key, node in keyed_b.items():
        if key not in keyed_a:
            p = _child_path(b, path, key, 0)
            out.append({"path": p, "change": "added", "a": None, "b": node.text})
