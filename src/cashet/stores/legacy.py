"""What the published cashet 0.4.x/0.5.x stored, as this cashet's commits and blobs.

Shared by the in-place migration of an old SQLite store
(:mod:`cashet.stores.sqlite.legacy`) and the import of an old ``cashet export`` archive
(:mod:`cashet.provenance.legacy_archive`). Pure (no IO).

The old format names a blob by the SHA-256 of its serialized bytes (kept raw in the
database or an archive, zlib-compressed in a blob file); this cashet names it by BLAKE3, so
every old blob is verified against its old name and stored again under its new one. An old
commit keeps its hash (``get``/``show`` by the hashes users have), but not its cache key: the
published key format differs, so a migrated commit is never a cache hit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cashet.hashing.commits import LEGACY_SALT
from cashet.models import Commit, ObjectRef, TaskDef, TaskStatus

__all__ = ["LEGACY", "LEGACY_SALT", "NOT_CACHED", "legacy_blob", "legacy_commit", "parse_time"]

#: How messages name the published versions whose data this module reads.
LEGACY = "cashet 0.4.x/0.5.x"
#: Said once when old commits are brought in.
NOT_CACHED = (
    "they load by hash (get/show/log/history) but are not cache hits: the published "
    "cache key format differs, so their calls run once again"
)


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def legacy_blob(stored: bytes, h: str) -> bytes | None:
    """The serialized bytes of old blob ``h`` if ``stored`` verifies, else ``None``.

    ``stored`` is what the old store kept: the bytes themselves or their zlib compression;
    either way the SHA-256 of the serialized bytes must be ``h``.
    """
    if not _HEX64.match(h):
        return None
    if hashlib.sha256(stored).hexdigest() == h:
        return stored
    try:
        raw = zlib.decompress(stored)
    except zlib.error:
        return None
    return raw if hashlib.sha256(raw).hexdigest() == h else None


def parse_time(value: Any) -> datetime | None:
    """An old ISO time (a naive one is UTC); ``None`` stays ``None``.

    Raises:
        ValueError: not an ISO time.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _snapshot(value: Any, base64_encoded: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    text = str(value)
    if base64_encoded:
        try:
            return base64.b64decode(text, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return text
    return text


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def legacy_commit(
    old: Mapping[str, Any],
    result: ObjectRef | None,
    inputs: Mapping[str, str],
    lost: str | None = None,
    base64_snapshot: bool = False,
) -> Commit:
    """This cashet's form of an old commit; its hash stays the old one.

    Args:
        old: the old commit's fields by their old names (``hash``, ``func_name``,
            ``func_hash``, ``args_hash``, ``func_source``, ``args_snapshot``, ``cache``,
            ``force``, ``retries``, ``timeout_seconds``, ``ttl_seconds``, ``status``,
            ``error``, ``tags``, ``created_at``, ``last_accessed_at``, ``expires_at``,
            ``parent_hash``, ``input_refs``).
        result: the migrated result blob, ``None`` when there is none (or it was lost).
        inputs: old blob hash -> new blob hash, for the recorded inputs.
        lost: why a result the old commit had was left out; the commit then is a failed
            one whose error says so, never a completed one without its value.
        base64_snapshot: the args snapshot is base64 (archives) rather than bytes.

    Raises:
        ValueError, TypeError: a field cannot be read.
    """
    h = str(old["hash"])
    if not _HEX64.match(h):
        raise ValueError(f"commit hash {h!r} is not 64 hex digits")
    tags = {str(k): str(v) for k, v in dict(old.get("tags") or {}).items()}
    status_text = str(old.get("status") or "")
    error = old.get("error")
    error = None if error is None else str(error)
    if status_text == "completed" and result is not None:
        status = TaskStatus.COMPLETED
    elif status_text == "completed":
        status, result = TaskStatus.FAILED, None
        error = f"the result was not migrated from {LEGACY}: {lost or 'it has none'}"
    elif status_text == "failed":
        status, result = TaskStatus.FAILED, None
        error = error or f"failed (migrated from {LEGACY})"
    else:
        status, result = TaskStatus.FAILED, None
        error = f"interrupted: it was {status_text!r} when migrated from {LEGACY}"
    created = parse_time(old.get("created_at"))
    if created is None:
        raise ValueError("no creation time")
    parent = old.get("parent_hash")
    task_def = TaskDef(
        func_name=str(old["func_name"]),
        func_hash=str(old["func_hash"]),
        args_hash=str(old["args_hash"]),
        func_source=str(old.get("func_source") or ""),
        args_snapshot=_snapshot(old.get("args_snapshot"), base64_snapshot),
        cache=bool(old.get("cache", True)),
        force=bool(old.get("force", False)),
        retries=int(old.get("retries") or 0),
        timeout=_opt_float(old.get("timeout_seconds")),
        ttl=_opt_float(old.get("ttl_seconds")),
        tags=tags,
    )
    return Commit(
        hash=h,
        task_def=task_def,
        status=status,
        created_at=created,
        result=result,
        parent_hash=None if parent is None else str(parent),
        error=error,
        tags=dict(tags),
        expires_at=parse_time(old.get("expires_at")),
        input_hashes=tuple(inputs.get(str(x), str(x)) for x in old.get("input_refs") or ()),
        salt=LEGACY_SALT,
        last_accessed=parse_time(old.get("last_accessed_at")),
    )
