"""The JSON view of a commit, shared by the CLI (``--json``) and the HTTP server.

Pure: no store, no IO. One function per view so both shells print the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cashet.models import Commit

__all__ = ["commit_view", "iso", "manifest_rows"]


def iso(value: datetime | None) -> str | None:
    """Return ``value`` in ISO 8601 (``None`` stays ``None``)."""
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
        "created_at": iso(commit.created_at),
        "last_accessed": iso(commit.last_accessed),
        "expires_at": iso(commit.expires_at),
        "expired": commit.is_expired(now),
        "parent_hash": commit.parent_hash,
        "result": None
        if commit.result is None
        else {"hash": commit.result.hash, "size": commit.result.size},
        "compute_seconds": commit.compute_seconds,
        "hits": commit.hits,
        "last_hit": iso(commit.last_hit),
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
    # The published cashet's names for the same facts, kept beside ours so that clients
    # written against it keep working (issue 12; docs/compatibility.md).
    view["short_hash"] = commit.hash[:12]
    view["function"] = td.func_name
    view["output"] = None if commit.result is None else commit.result.hash
    view["parent"] = commit.parent_hash
    if full:
        view["func_source"] = td.func_source
        view["manifest"] = dict(td.manifest)
    return view


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def manifest_rows(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The manifest of a commit's key as ``(kind, what, short digest)`` rows, for people:
    the function, the code reached, the values read (and those left out, with why), the
    arguments by name, Python and the packages. Empty when no manifest was recorded."""
    if not manifest:
        return []
    rows: list[tuple[str, str, str]] = []
    fn = manifest.get("function") or {}
    rows.append(("function", _text(fn.get("name")), _text(fn.get("digest"))[:12]))
    rows += [
        ("code", _text(e.get("name")), _text(e.get("digest"))[:12])
        for e in _entries(manifest, "code")
    ]
    for entry in _entries(manifest, "values"):
        what = _text(entry.get("name"))
        if "preview" in entry:
            what += f" = {_text(entry.get('preview'))}"
        owner = _text(entry.get("owner"))
        left_out = _text(entry.get("left_out"))
        if left_out:
            rows.append(("left out", f"{what}  ({left_out}; read by {owner})", ""))
        else:
            rows.append(("value", f"{what}  (read by {owner})", _text(entry.get("digest"))[:12]))
    for entry in _entries(manifest, "arguments"):
        what = f"{_text(entry.get('name'))} = {_text(entry.get('preview'))}"
        if entry.get("default"):
            what += "  (default)"
        rows.append(("argument", what, _text(entry.get("digest"))[:12]))
    if manifest.get("python"):
        rows.append(("python", _text(manifest.get("python")), ""))
    packages = manifest.get("packages")
    if isinstance(packages, Mapping):
        rows += [("package", f"{name} {_text(v)}", "") for name, v in sorted(packages.items())]
    return rows


def _entries(manifest: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    found = manifest.get(key)
    if not isinstance(found, list):
        return []
    return [e for e in found if isinstance(e, Mapping)]
