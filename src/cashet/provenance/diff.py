"""Comparing two commits: which of function, arguments, output and status changed.

Pure: no store, no IO. Argument snapshots (the readable ``repr`` a commit keeps) are parsed
forgivingly and compared structurally, so a diff names ``kwargs['model']`` rather than two
long lines.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from cashet.models import Commit
from cashet.provenance.views import iso

__all__ = ["diff_args", "diff_commits"]

#: At most this many entries in a structural args diff (snapshots are bounded anyway).
_MAX_ARG_CHANGES = 200


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
        "created_at_a": iso(a.created_at),
        "created_at_b": iso(b.created_at),
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
class _Parsed:
    """A parsed value: its text, and for a container its opener, head and items.

    ``head`` is the text before the opener (``Point`` in ``Point(x=1)``); an item's key is
    the text of a dict key or a keyword name, ``None`` for a positional item.
    """

    text: str
    opener: str = ""
    head: str = ""
    items: list[tuple[str | None, _Parsed]] = field(default_factory=list)


_PAIRS = {"(": ")", "[": "]", "{": "}"}
_KWARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=(?!=)")


def _parse(text: str) -> _Parsed:
    parser = _Parser(text)
    node = parser.value("")
    if parser.i < len(text):  # trailing text (e.g. a stray closer): compare as text
        return _Parsed(text.strip())
    return node


class _Parser:
    """A forgiving reader of repr-like text: brackets, quotes, ``key: value``, ``k=v``."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def value(self, stops: str) -> _Parsed:
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i].isspace():
            self.i += 1
        start = self.i
        node: _Parsed | None = None
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
                    node = _Parsed("", opener, head, self._items(_PAIRS[c]))
                else:
                    self._skip_balanced()
            elif c in stops or c in ")]}":
                break
            else:
                self.i += 1
        text = s[start : self.i].strip()
        if node is None:
            return _Parsed(text)
        node.text = text
        return node

    def _items(self, close: str) -> list[tuple[str | None, _Parsed]]:
        s, n = self.s, len(self.s)
        items: list[tuple[str | None, _Parsed]] = []
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


def _split_call(root: _Parsed) -> tuple[_Parsed, _Parsed] | None:
    """``(args_tuple, kwargs_dict)`` -> its two parts, else ``None``."""
    if root.opener != "(" or root.head or not 1 <= len(root.items) <= 2:
        return None
    (k1, args), (k2, kwargs) = (*root.items, (None, _Parsed("{}", "{")))[:2]
    if k1 is None and k2 is None and args.opener == "(" and kwargs.opener == "{":
        return args, kwargs  # one item only when the snapshot was cut short
    return None


def _child_path(parent: _Parsed, path: str, key: str | None, index: int) -> str:
    if key is None:
        return f"{path}[{index}]"
    if parent.opener == "{":
        return f"{path}[{key}]"
    return f"{path}.{key}"


def _diff(a: _Parsed, b: _Parsed, path: str, out: list[dict[str, Any]]) -> None:
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
