"""Why a call missed (or why a commit was computed): the key manifest compared with the
nearest earlier run of the same function.

The comparison is pure; :func:`explain_key` and :func:`why` read a store through the
contract (``find_by_fingerprint``, ``list_commits``), never writing. This module picks the
nearest earlier run and names what differs, part by part:

* ``source``: the task function's own code (``before``/``after`` are a unified diff);
* ``helper``: a function or class it reaches (added, removed or edited);
* ``global`` / ``closure``: a value the code reads (``2`` -> ``3``);
* ``argument``: an argument, by parameter name;
* ``environment``: the Python version or a package version (recorded even when not in
  the key: a likely cause of a different result).

*Nearest* means the most key parts in common, then the newest.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cashet.models import Commit, TaskDef, TaskStatus
from cashet.protocols import Store
from cashet.provenance.query import resolve_commit
from cashet.provenance.views import iso

__all__ = [
    "Change",
    "Explanation",
    "compare_manifests",
    "explain_call",
    "explain_commit",
    "explain_key",
    "why",
]

KINDS = ("source", "helper", "global", "closure", "argument", "environment")


@dataclass(frozen=True, slots=True)
class Change:
    """One part of the key that differs from the earlier run.

    Attributes:
        kind: ``"source"``, ``"helper"``, ``"global"``, ``"closure"``, ``"argument"`` or
            ``"environment"``.
        name: the function, helper, global, closure variable, argument or package.
        before: short readable text of the earlier run's part (``"(absent)"`` when it had
            none); for ``source``, the unified diff.
        after: the same for this call.
    """

    kind: str
    name: str
    before: str
    after: str

    def __str__(self) -> str:
        if self.kind == "source":
            return f"source of {self.name} changed:\n{self.before}".rstrip()
        return f"{self.kind} {self.name}: {self.before} -> {self.after}"

    def to_dict(self) -> dict[str, str]:
        """A JSON-able form."""
        return {"kind": self.kind, "name": self.name, "before": self.before, "after": self.after}


@dataclass(slots=True)
class Explanation:
    """Why a call is (or is not) a cache hit, or why a commit was computed.

    Attributes:
        hit: whether the call would be answered from the cache (``False`` for ``why``).
        changes: what differs from the earlier run compared (empty for a hit).
        function: ``module.qualname`` of the task.
        fingerprint: the call's cache key.
        commit: the commit that answers the call (a hit), or the one explained (``why``).
        previous: the earlier run compared with, or ``None`` when there is none.
        reason: a sentence for what ``changes`` cannot say (a first run; the same key as an
            earlier run that failed, expired or lost its result).
    """

    hit: bool
    changes: list[Change] = field(default_factory=list)
    function: str = ""
    fingerprint: str = ""
    commit: Commit | None = None
    previous: Commit | None = None
    reason: str = ""

    def __str__(self) -> str:
        name = self.function or "the call"
        if self.hit and self.commit is not None:
            return f"hit: {name} is answered by commit {self.commit.hash[:12]}"
        lines = [f"miss: {name} will run" if self.commit is None else self._why_head()]
        if self.previous is not None:
            when = iso(self.previous.created_at)
            lines.append(f"compared with commit {self.previous.hash[:12]} ({when})")
        if self.reason:
            lines.append(self.reason)
        lines += [f"  {line}" for c in self.changes for line in str(c).splitlines()]
        return "\n".join(lines)

    def _why_head(self) -> str:
        assert self.commit is not None
        return f"commit {self.commit.hash[:12]} of {self.function} was computed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (what ``cashet why --json`` prints)."""
        return {
            "hit": self.hit,
            "function": self.function,
            "fingerprint": self.fingerprint,
            "commit": None if self.commit is None else self.commit.hash,
            "previous": None if self.previous is None else self.previous.hash,
            "reason": self.reason,
            "changes": [c.to_dict() for c in self.changes],
        }


# --- comparing manifests ----------------------------------------------------------------------


def _entries(manifest: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    found = manifest.get(key)
    return [e for e in found if isinstance(e, Mapping)] if isinstance(found, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _by(entries: Iterable[Mapping[str, Any]], *keys: str) -> dict[tuple[str, ...], Any]:
    return {tuple(_str(e.get(k)) for k in keys): e for e in entries}


def _shown(entry: Mapping[str, Any] | None, other: Mapping[str, Any] | None) -> str:
    """The preview of an entry; its digest too when the two previews read alike."""
    if entry is None:
        return "(absent)"
    text = _str(entry.get("preview")) or f"<{_str(entry.get('digest'))[:12]}>"
    if other is not None and _str(other.get("preview")) == _str(entry.get("preview")):
        text += f" (digest {_str(entry.get('digest'))[:12]})"
    return text


def _code(digest: str | None) -> str:
    return "(absent)" if digest is None else f"code {digest[:12]}"


def _source_diff(name: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{name} (before)",
        tofile=f"{name} (now)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")


def compare_manifests(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    before_source: str = "",
    after_source: str = "",
) -> list[Change]:
    """What differs between two key manifests (see :mod:`cashet.hashing.manifest`)."""
    changes: list[Change] = []
    task = _str((after.get("function") or {}).get("name"))
    code_a = _by(_entries(before, "code"), "name")
    code_b = _by(_entries(after, "code"), "name")
    for key in sorted(code_a.keys() | code_b.keys()):
        a, b = code_a.get(key), code_b.get(key)
        da = None if a is None else _str(a.get("digest"))
        db = None if b is None else _str(b.get("digest"))
        if da == db:
            continue
        name = key[0]
        if name == task:
            diff = _source_diff(name.rpartition(".")[2], before_source, after_source)
            changes.append(Change("source", name, diff or "(code changed)", ""))
        else:  # code digests: the manifest keeps no helper source
            changes.append(Change("helper", name, _code(da), _code(db)))
    changes += _value_changes(before, after)
    changes += _argument_changes(before, after)
    changes += _environment_changes(before, after)
    return changes


def _value_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    def kept(manifest: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
        return _by((e for e in _entries(manifest, "values") if "digest" in e), "owner", "name")

    va, vb = kept(before), kept(after)
    out = []
    for key in sorted(va.keys() | vb.keys()):
        a, b = va.get(key), vb.get(key)
        if a is not None and b is not None and a.get("digest") == b.get("digest"):
            continue
        label = key[1]
        kind = "closure" if label.startswith("closure:") else "global"
        out.append(Change(kind, label.removeprefix("closure:"), _shown(a, b), _shown(b, a)))
    return out


def _argument_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    aa, ab = _by(_entries(before, "arguments"), "name"), _by(_entries(after, "arguments"), "name")
    out = []
    for key in sorted(aa.keys() | ab.keys(), key=lambda k: _position(k[0], before, after)):
        a, b = aa.get(key), ab.get(key)
        if a is not None and b is not None and a.get("digest") == b.get("digest"):
            continue
        out.append(Change("argument", key[0], _shown(a, b), _shown(b, a)))
    return out


def _position(name: str, *manifests: Mapping[str, Any]) -> tuple[int, str]:
    for m in manifests:
        for i, e in enumerate(_entries(m, "arguments")):
            if e.get("name") == name:
                return i, name
    return 1 << 30, name


def _environment_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    out = []
    pa, pb = _str(before.get("python")), _str(after.get("python"))
    if pa and pb and pa != pb:
        out.append(Change("environment", "python", pa, pb))
    ka, kb = before.get("packages") or {}, after.get("packages") or {}
    if isinstance(ka, Mapping) and isinstance(kb, Mapping):
        for name in sorted(ka.keys() | kb.keys()):
            a, b = ka.get(name), kb.get(name)
            if a is not None and b is not None and a != b:
                out.append(Change("environment", str(name), str(a), str(b)))
    return out


# --- picking the earlier run -------------------------------------------------------------------


def _parts(manifest: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """The key parts of a manifest, comparable across runs."""
    out: set[tuple[str, ...]] = set()
    for e in _entries(manifest, "code"):
        out.add(("code", _str(e.get("name")), _str(e.get("digest"))))
    for e in _entries(manifest, "values"):
        out.add(("value", _str(e.get("owner")), _str(e.get("name")), _str(e.get("digest"))))
    for e in _entries(manifest, "arguments"):
        out.add(("arg", _str(e.get("name")), _str(e.get("digest"))))
    return out


def _same_function(c: Commit, function: str) -> bool:
    name = _str((c.task_def.manifest.get("function") or {}).get("name"))
    if name:
        return name == function
    module = f"{c.task_def.module}." if c.task_def.module else ""
    return f"{module}{c.func_name}" == function  # a commit made before manifests


def nearest(candidates: Sequence[Commit], manifest: Mapping[str, Any]) -> Commit | None:
    """The earlier run of the same function nearest to ``manifest``: most key parts in
    common, then the newest. Runs still in flight are not runs."""
    function = _str((manifest.get("function") or {}).get("name"))
    mine = _parts(manifest)
    best: tuple[int, float] | None = None
    found: Commit | None = None
    for c in candidates:
        if c.status is TaskStatus.RUNNING or not _same_function(c, function):
            continue
        score = (len(mine & _parts(c.task_def.manifest)), c.created_at.timestamp())
        if best is None or score > best:
            best, found = score, c
    return found


def _unchanged_reason(previous: Commit) -> str:
    """Why a call with the same key as ``previous`` is not answered by it."""
    if previous.status is TaskStatus.FAILED:
        return "the same key as an earlier run that failed: failures are not cached"
    if previous.is_expired():
        return "the same key as an earlier run whose entry expired (ttl)"
    if not previous.task_def.cache:
        return "the same key as an earlier run made with cache=False"
    return "the same key as an earlier run whose result is no longer stored"


def _explain(
    manifest: Mapping[str, Any],
    source: str,
    previous: Commit | None,
) -> tuple[list[Change], str]:
    if previous is None:
        return [], "no earlier run of this function is in the cache: it is the first"
    td = previous.task_def
    if not td.manifest:
        changes = []
        if td.func_hash != _str((manifest.get("function") or {}).get("digest")):
            name = _str((manifest.get("function") or {}).get("name"))
            diff = _source_diff(name.rpartition(".")[2], td.func_source, source)
            changes.append(Change("source", name, diff or "(code or what it reads changed)", ""))
        reason = "the earlier run has no key manifest (made before manifests): compared by source"
        return changes, reason
    changes = compare_manifests(td.manifest, manifest, td.func_source, source)
    if not changes:
        return [], _unchanged_reason(previous)
    return changes, ""


def explain_call(
    manifest: Mapping[str, Any],
    source: str,
    fingerprint: str,
    hit: Commit | None,
    candidates: Sequence[Commit],
    forced: bool = False,
) -> Explanation:
    """Explain a call before it runs: a hit, or what differs from the nearest earlier run.

    Args:
        manifest: the call's key manifest (``cashet.hashing.manifest.key_manifest``).
        source: the task function's source now.
        fingerprint: the call's cache key.
        hit: the commit that answers it, or ``None``.
        candidates: earlier commits of the function (any order).
        forced: the call recomputes whatever the cache holds (``_force=True``,
            ``mode="refresh"``, ``cache=False``).
    """
    function = _str((manifest.get("function") or {}).get("name"))
    if hit is not None:
        return Explanation(True, [], function, fingerprint, hit, None, "")
    previous = nearest(candidates, manifest)
    changes, reason = _explain(manifest, source, previous)
    if forced and not changes:
        reason = (
            "the call is forced (_force=True, cache=False or mode='refresh'):"
            " it runs whatever the cache holds"
        )
    return Explanation(False, changes, function, fingerprint, None, previous, reason)


def explain_commit(commit: Commit, candidates: Sequence[Commit]) -> Explanation:
    """Why ``commit`` was computed: its differences from the nearest earlier run of the same
    function (``candidates``: commits of that function, any order)."""
    td = commit.task_def
    manifest: Mapping[str, Any] = td.manifest or {
        "function": {"name": f"{td.module}.{td.func_name}" if td.module else td.func_name}
    }
    earlier = [
        c
        for c in candidates
        if c.hash != commit.hash and (c.created_at, c.hash) < (commit.created_at, commit.hash)
    ]
    previous = nearest(earlier, manifest)
    changes, reason = _explain(manifest, td.func_source, previous)
    function = _str((manifest.get("function") or {}).get("name"))
    return Explanation(False, changes, function, td.fingerprint, commit, previous, reason)


# --- over a store ------------------------------------------------------------------------------

#: At most this many earlier runs of a function are compared (the newest).
CANDIDATES = 2000


def explain_key(
    store: Store, task_def: TaskDef, manifest: Mapping[str, Any], source: str
) -> Explanation:
    """:func:`explain_call` for a call keyed as ``task_def``, reading ``store`` only."""
    hit = None
    if task_def.cache and not task_def.force:
        found = store.find_by_fingerprint(task_def.fingerprint)
        if found is not None and found.result is not None:
            hit = found
    candidates = [] if hit else store.list_commits(func_name=task_def.func_name, limit=CANDIDATES)
    forced = task_def.force or not task_def.cache
    return explain_call(manifest, source, task_def.fingerprint, hit, candidates, forced)


def why(store: Store, hash_or_prefix: str) -> Explanation:
    """Why the commit ``hash_or_prefix`` names was computed (see :func:`explain_commit`).

    Raises:
        CommitNotFoundError: no commit has that hash.
        AmbiguousHashError: the prefix matches several commits.
    """
    commit = resolve_commit(store, hash_or_prefix, by_result=True)
    candidates = store.list_commits(func_name=commit.func_name, limit=CANDIDATES)
    return explain_commit(commit, candidates)
