"""Import an archive made by ``cashet export`` of the published cashet 0.4.x/0.5.x.

Layout of such an archive (every member a regular file)::

    cashet-export/manifest.json       {"version": 1, "blob_hashes": [...], "commit_hashes": [...]}
    cashet-export/commits.jsonl       one old commit per line
    cashet-export/blobs/ab/cdef…      a result blob's serialized bytes, named by their SHA-256

:func:`cashet.provenance.archive.import_archive` hands such an archive here. It is treated
as untrusted and imported all-or-nothing, like ours: every member's name and type are checked
before it is read (nothing is extracted; only ``put_blob``/``put_commit`` write), every blob
is hashed as it streams by and must match its name (and is verified again when stored, under
its BLAKE3 name), the manifest must list exactly the commits and blobs present, every commit
must be well-formed, not dated in the future, and its result a blob of the archive of the
recorded size. An old commit's hash cannot be recomputed (the old content hash is not this
cashet's), so it is kept as recorded; its result is verified. The commits keep their hashes
and load by them, but are not cache hits (the old cache key format differs): said once, in a
log warning.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blake3 import blake3

from cashet._log import log
from cashet.errors import ArchiveError
from cashet.models import Commit, ObjectRef, utcnow
from cashet.protocols import Store
from cashet.provenance.tar_input import (
    CLOCK_SKEW,
    LEGACY_ROOT,
    MAX_JSON_BYTES,
    check_safe,
    reading,
    stamp,
)
from cashet.stores.base import full_store
from cashet.stores.blobs import blob_hash
from cashet.stores.legacy import LEGACY, NOT_CACHED, legacy_blob, legacy_commit

__all__ = ["import_legacy_archive"]

_MANIFEST = f"{LEGACY_ROOT}/manifest.json"
_COMMITS = f"{LEGACY_ROOT}/commits.jsonl"
_BLOB = re.compile(rf"^{LEGACY_ROOT}/blobs/([0-9a-f]{{2}})/([0-9a-f]{{62}})$")
_DIR = re.compile(rf"^{LEGACY_ROOT}(/blobs(/[0-9a-f]{{2}})?)?/?$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = re.compile(r"^[0-9a-f]{16,128}$")
#: Largest ``commits.jsonl`` read (every commit of the archive, with sources and snapshots).
MAX_COMMITS_BYTES = 1 << 30
_CHUNK = 1 << 20


@dataclass
class _Plan:
    manifest: dict[str, Any] | None = None
    lines: list[Any] | None = None
    blobs: dict[str, ObjectRef] = field(default_factory=dict)  # old hash -> new ref
    seen: set[str] = field(default_factory=set)


def import_legacy_archive(store: Store, path: Path) -> tuple[int, int, int]:
    """Validate a cashet 0.4.x/0.5.x export, then add its commits and blobs to ``store``.

    Returns:
        The commits imported, those the store already had, and the blobs added.

    Raises:
        ArchiveError: the archive is unreadable, unsafe, inconsistent or tampered with;
            the store is unchanged.
        StoreError: the store failed while writing (commits written so far are removed).
    """
    first = stamp(path)
    plan = _Plan()
    with reading(path) as tar:
        for member in tar:
            _scan(tar, member, plan)
    if plan.manifest is None or plan.lines is None:
        raise ArchiveError(f"{path} is a {LEGACY} export without its manifest or commits")
    commits = _commits(plan)

    new = {h: c for h, c in commits.items() if store.get_commit(h) is None}
    needed = {
        c.result.hash: c.result.size
        for c in new.values()
        if c.result is not None and not full_store(store).has_blob(c.result.hash)
    }
    if needed:
        if stamp(path) != first:
            raise ArchiveError(f"{path} changed while it was being imported")
        _store_blobs(store, path, plan, needed)
    stored: list[str] = []
    try:
        for commit in sorted(new.values(), key=lambda c: (c.created_at, c.hash)):
            store.put_commit(commit)
            stored.append(commit.hash)
    except BaseException:
        for h in stored:
            with suppress(Exception):
                store.delete_commit(h)
        raise
    if new:
        log.warning(
            "imported %d commit(s) from a %s export %s; %s", len(new), LEGACY, path, NOT_CACHED
        )
    return len(new), len(commits) - len(new), len(needed)


def _scan(tar: tarfile.TarFile, member: tarfile.TarInfo, plan: _Plan) -> None:
    check_safe(member)
    name = member.name
    if member.isdir():
        if not _DIR.match(name):
            raise ArchiveError(f"unexpected directory {name!r} in a {LEGACY} export")
        return
    if not member.isfile() or member.issparse():
        raise ArchiveError(f"unsupported member {name!r} (type {member.type!r})")
    blob = _BLOB.match(name)
    if name not in (_MANIFEST, _COMMITS) and blob is None:
        raise ArchiveError(f"unexpected member {name!r} in a {LEGACY} export")
    if name in plan.seen:
        raise ArchiveError(f"member {name!r} appears twice")
    plan.seen.add(name)
    f = tar.extractfile(member)
    if f is None:  # pragma: no cover - regular files always have data
        raise ArchiveError(f"cannot read member {name!r}")
    if blob is not None:
        h = blob.group(1) + blob.group(2)
        old, new = hashlib.sha256(), blake3()
        size = 0
        while chunk := f.read(_CHUNK):
            old.update(chunk)
            new.update(chunk)
            size += len(chunk)
        if old.hexdigest() != h:
            raise ArchiveError(
                f"blob {name!r} is corrupt or forged: its bytes do not match its hash"
            )
        plan.blobs[h] = ObjectRef(new.hexdigest(), size)
        return
    limit = MAX_JSON_BYTES if name == _MANIFEST else MAX_COMMITS_BYTES
    if member.size > limit:
        raise ArchiveError(f"member {name!r} is too large ({member.size} bytes)")
    raw = f.read(limit + 1)
    try:
        if name == _MANIFEST:
            manifest = json.loads(raw, parse_constant=_no_constant)
            if not isinstance(manifest, dict) or manifest.get("version") != 1:
                raise ArchiveError(f"{_MANIFEST} is not a version 1 {LEGACY} export manifest")
            plan.manifest = manifest
        else:
            text = raw.decode()
            plan.lines = [
                json.loads(line, parse_constant=_no_constant)
                for line in text.splitlines()
                if line.strip()
            ]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"member {name!r} is not valid JSON: {exc}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _listed(manifest: dict[str, Any], key: str) -> set[str] | None:
    value = manifest.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ArchiveError(f"{_MANIFEST}: {key} is not a list of hashes")
    return set(value)


def _commits(plan: _Plan) -> dict[str, Commit]:
    """Check every old commit against the archive and turn it into one of ours."""
    assert plan.manifest is not None and plan.lines is not None
    commits: dict[str, Commit] = {}
    inputs = {h: ref.hash for h, ref in plan.blobs.items()}
    horizon = utcnow() + CLOCK_SKEW
    for data in plan.lines:
        h = data.get("hash") if isinstance(data, dict) else None
        if not isinstance(h, str) or not _HASH.match(h):
            raise ArchiveError(f"{_COMMITS} holds a line that is not a commit with a hash")
        if h in commits:
            raise ArchiveError(f"commit {h[:12]} appears twice")
        commits[h] = commit = _commit(h, data, plan, inputs)
        if commit.created_at > horizon:
            raise ArchiveError(f"commit {h[:12]} is dated in the future")
    listed = _listed(plan.manifest, "commit_hashes")
    if listed is not None and listed != set(commits):
        raise ArchiveError(f"{_MANIFEST} does not list exactly the commits of the archive")
    blobs = _listed(plan.manifest, "blob_hashes")
    if blobs is not None and blobs != set(plan.blobs):
        raise ArchiveError(f"{_MANIFEST} does not list exactly the blobs of the archive")
    return commits


def _bad(h: str, why: str) -> ArchiveError:
    return ArchiveError(f"commit {h[:12]} is malformed: {why}")


def _commit(h: str, data: dict[str, Any], plan: _Plan, inputs: dict[str, str]) -> Commit:
    td = data.get("task_def")
    if not isinstance(td, dict):
        raise _bad(h, "no task_def")
    if not isinstance(td.get("func_name"), str) or not td["func_name"]:
        raise _bad(h, "bad func_name")
    for key in ("func_hash", "args_hash"):
        if not isinstance(td.get(key), str) or not _DIGEST.match(td[key]):
            raise _bad(h, f"bad {key}")
    if data.get("status") not in ("completed", "failed", "running", "pending"):
        raise _bad(h, f"bad status {data.get('status')!r}")
    parent = data.get("parent_hash")
    if parent is not None and not (isinstance(parent, str) and _HASH.match(parent)):
        raise _bad(h, "bad parent_hash")
    raw_refs = data.get("input_refs") or []
    if not isinstance(raw_refs, list):
        raise _bad(h, "bad input_refs")
    # Each input is {"hash", "size", "tier"} (or a bare hash).
    refs = [x.get("hash") if isinstance(x, dict) else x for x in raw_refs]
    if not all(isinstance(x, str) and _HASH.match(x) for x in refs):
        raise _bad(h, "bad input_refs")
    result: ObjectRef | None = None
    out = data.get("output_ref")
    if out is not None:
        if not isinstance(out, dict) or not isinstance(out.get("hash"), str):
            raise _bad(h, "bad output_ref")
        result = plan.blobs.get(out["hash"])
        if result is None:
            raise ArchiveError(
                f"commit {h[:12]} needs result blob {out['hash'][:12]}, which is not in the archive"
            )
        if out.get("size") is not None and out.get("size") != result.size:
            raise ArchiveError(
                f"commit {h[:12]} records a result of {out.get('size')} bytes, but blob "
                f"{out['hash'][:12]} of the archive has {result.size} bytes"
            )
    if data.get("status") == "completed" and result is None:
        raise _bad(h, "a completed commit without its result")
    old = {**td, **{k: v for k, v in data.items() if k != "task_def"}}
    old["tags"] = data.get("tags") or td.get("tags") or {}
    old["input_refs"] = refs
    old.setdefault("last_accessed_at", data.get("last_accessed_at"))
    try:
        commit = legacy_commit(old, result, inputs, base64_snapshot=True)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(h, f"{type(exc).__name__}: {exc}") from exc
    return commit


def _store_blobs(store: Store, path: Path, plan: _Plan, needed: dict[str, int]) -> None:
    """Second read: store the blobs the new commits need, each verified again."""
    wanted = {ref.hash: old for old, ref in plan.blobs.items() if ref.hash in needed}
    left = dict(needed)
    with reading(path) as tar:
        for member in tar:
            m = _BLOB.match(member.name)
            if m is None or not member.isfile() or member.issparse():
                continue
            old = m.group(1) + m.group(2)
            ref = plan.blobs.get(old)
            if ref is None or ref.hash not in left:
                continue
            f = tar.extractfile(member)
            stored = f.read() if f is not None else b""
            data = legacy_blob(stored, old)
            if data is None or len(data) != ref.size or blob_hash(data) != ref.hash:
                raise ArchiveError(f"{path} changed while it was being imported (blob {old[:12]})")
            if store.put_blob(data).hash != ref.hash:  # pragma: no cover - hashes what it gets
                raise ArchiveError(f"the store recorded blob {old[:12]} under another hash")
            del left[ref.hash]
    if left:
        missing = ", ".join(wanted.get(h, h)[:12] for h in left)
        raise ArchiveError(
            f"{path} changed while it was being imported (blobs {missing} went missing)"
        )
