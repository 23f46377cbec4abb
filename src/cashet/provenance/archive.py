"""Export a store to a portable ``.tar.gz`` and import one, over the ``Store`` protocol.

Layout of an archive (every member a regular file)::

    cashet-archive/manifest.json          {"format": "cashet-archive", "version": 1, ...}
    cashet-archive/commits/<hash>.json    one commit (``hashing.commits.stored_json``)
    cashet-archive/blobs/ab/cdef…         a result blob's serialized bytes, named by hash

Export streams: one blob is in memory at a time, commits are read in batches.

Import treats the archive as untrusted and is all-or-nothing:

1. *Validate* (first read of the archive, nothing written): every member's name and type
   are checked before its data is read (no absolute paths, ``..``, links, devices or
   unexpected names; nothing is ever extracted to the filesystem); each blob is hashed as
   it streams by and must match its name; each commit must parse, hold well-formed values,
   not be dated in the future, and hash (``compute_commit_hash``) to its name; each
   commit's result must be a blob of the archive (of the recorded size) or of the store.
2. *Blobs* (second read, only if the store lacks some): each needed blob is verified again
   and stored with ``put_blob``.
3. *Commits*: stored with ``put_commit``, oldest first; should the store fail midway, the
   commits already stored are deleted again.

An export of the published cashet 0.4.x/0.5.x (``cashet-export/`` members) is recognised by
its first member and imported by :mod:`cashet.provenance.legacy_archive`, with the same
checks. Only ``put_blob``/``put_commit`` write, so nothing lands outside the store. Integrity is
what import can check; provenance is not: an archive is as trustworthy as whoever made it
(a consistent archive from a malicious producer can record any result for any call, and
pickled results run code when loaded). Import only from sources you trust.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import secrets
import tarfile
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from blake3 import blake3

from cashet._version import __version__
from cashet.errors import ArchiveError, BlobError
from cashet.hashing.commits import commit_from_dict, compute_commit_hash, stored_json
from cashet.models import Commit, ObjectRef, TaskStatus, utcnow
from cashet.protocols import Store
from cashet.provenance.legacy_archive import import_legacy_archive
from cashet.provenance.tar_input import (
    CLOCK_SKEW,
    LEGACY_ROOT,
    MAX_JSON_BYTES,
    OldFormat,
    check_safe,
)
from cashet.provenance.tar_input import (
    reading as _reading,
)
from cashet.provenance.tar_input import (
    stamp as _stamp,
)
from cashet.stores.base import full_store
from cashet.stores.blobs import blob_hash
from cashet.stores.legacy import LEGACY_SALT

__all__ = ["ExportResult", "ImportResult", "export_archive", "import_archive"]

ROOT = "cashet-archive"
FORMAT = "cashet-archive"
VERSION = 1
MANIFEST = f"{ROOT}/manifest.json"

_COMMIT_NAME = re.compile(rf"^{ROOT}/commits/([0-9a-f]{{64}})\.json$")
_BLOB_NAME = re.compile(rf"^{ROOT}/blobs/([0-9a-f]{{2}})/([0-9a-f]{{62}})$")
_DIR_NAME = re.compile(rf"^{ROOT}(/commits|/blobs(/[0-9a-f]{{2}})?)?$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
#: Function and argument digests: lowercase hex, never a ``:`` (it separates them).
_DIGEST = re.compile(r"^[0-9a-f]{16,128}$")

_CHUNK = 1 << 20
_GZIP_LEVEL = 6


class ExportResult(int):
    """The number of commits exported, with details.

    Attributes:
        commits: commits written.
        blobs: distinct result blobs written.
        bytes: their total size.
        skipped: hashes of commits left out because their result blob was missing or
            corrupt in the store.
    """

    commits: int
    blobs: int
    bytes: int
    skipped: tuple[str, ...]

    def __new__(
        cls, commits: int, blobs: int = 0, bytes: int = 0, skipped: tuple[str, ...] = ()
    ) -> ExportResult:
        self = super().__new__(cls, commits)
        self.commits, self.blobs, self.bytes, self.skipped = commits, blobs, bytes, skipped
        return self

    def __str__(self) -> str:
        return int.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExportResult, (self.commits, self.blobs, self.bytes, self.skipped))

    def __repr__(self) -> str:
        return (
            f"ExportResult(commits={self.commits}, blobs={self.blobs}, bytes={self.bytes}, "
            f"skipped={len(self.skipped)})"
        )


class ImportResult(int):
    """The number of commits imported (an ``int``, as the README shows), with details.

    Attributes:
        imported: commits added to the store.
        skipped: commits of the archive the store already had.
        blobs: blobs added to the store.
    """

    imported: int
    skipped: int
    blobs: int

    def __new__(cls, imported: int, skipped: int = 0, blobs: int = 0) -> ImportResult:
        self = super().__new__(cls, imported)
        self.imported, self.skipped, self.blobs = imported, skipped, blobs
        return self

    def __str__(self) -> str:
        return int.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ImportResult, (self.imported, self.skipped, self.blobs))

    def __repr__(self) -> str:
        return f"ImportResult(imported={self.imported}, skipped={self.skipped}, blobs={self.blobs})"


# --- export ---------------------------------------------------------------------------------


def export_archive(store: Store, path: str | os.PathLike[str]) -> ExportResult:
    """Write every commit of ``store`` and the result blobs they use to a ``.tar.gz``.

    The file appears complete or not at all (written beside ``path``, then renamed).
    A commit whose result blob cannot be read (missing or corrupt) is left out and listed
    in ``skipped``.

    Raises:
        OSError: ``path`` cannot be written.
        StoreError: the store cannot be read.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(6)}")
    written: set[str] = set()
    bad: set[str] = set()
    skipped: list[str] = []
    commits = total = 0
    now = int(time.time())
    try:
        with (
            open(tmp, "xb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=_GZIP_LEVEL, mtime=now) as gz,
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "created_at": utcnow().isoformat(),
                "cashet_version": __version__,
            }
            _add(tar, MANIFEST, json.dumps(manifest, indent=2).encode(), now)
            for commit in full_store(store).iter_commits():
                if not commit.hash or commit.status is TaskStatus.RUNNING:
                    continue
                result = commit.result
                if result is not None and result.hash not in written:
                    if result.hash in bad:
                        skipped.append(commit.hash)
                        continue
                    try:
                        data = store.get_blob(result)
                    except BlobError:
                        bad.add(result.hash)
                        skipped.append(commit.hash)
                        continue
                    h = result.hash
                    _add(tar, f"{ROOT}/blobs/{h[:2]}/{h[2:]}", data, now)
                    written.add(h)
                    total += len(data)
                    del data
                body = stored_json(commit).encode()
                _add(tar, f"{ROOT}/commits/{commit.hash}.json", body, now)
                commits += 1
            # tar and gzip end markers are written as the with-block closes
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return ExportResult(commits, len(written), total, tuple(skipped))


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# --- import ---------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What the validation pass learned: the commits to store and the blobs they need."""

    manifest: dict[str, Any] | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    blob_sizes: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)


def import_archive(store: Store, path: str | os.PathLike[str]) -> ImportResult:
    """Validate an archive made by :func:`export_archive`, then add it to ``store``.

    Commits the store already has are skipped (and counted in ``skipped``). Nothing is
    written unless the whole archive is valid (see the module docstring).

    Raises:
        ArchiveError: the archive is unreadable, unsafe, inconsistent or tampered with;
            the store is unchanged.
        StoreError: the store failed while writing (commits written so far are removed).
    """
    source = Path(path)
    stamp = _stamp(source)
    plan = _Plan()
    try:
        with _reading(source) as tar:
            for member in tar:
                _scan_member(tar, member, plan)
    except OldFormat:
        if getattr(store, "signing_key", None) is not None:
            raise ArchiveError(
                f"{source} is a cashet 0.4/0.5 archive: it holds no signatures, and this"
                " client signs (a team key is set): nothing imported"
            ) from None
        return ImportResult(*import_legacy_archive(store, source))
    if plan.manifest is None:
        raise ArchiveError(f"{source} is not a cashet archive: it has no {MANIFEST}")

    _check_signatures(store, plan.commits.values(), source)
    now = utcnow()
    new = {h: c for h, c in plan.commits.items() if store.get_commit(h) is None}
    needed: dict[str, int] = {}
    for commit in new.values():
        if commit.last_accessed is not None and commit.last_accessed > now:
            commit.last_accessed = now  # not hashed; never let it defer GC
        result = commit.result
        if result is None or result.hash in needed:
            continue
        size = plan.blob_sizes.get(result.hash)
        if size is not None and size != result.size:
            raise ArchiveError(
                f"commit {commit.hash[:12]} records a result of {result.size} bytes, but blob "
                f"{result.hash[:12]} of the archive has {size} bytes"
            )
        if full_store(store).has_blob(result.hash):
            continue
        if size is None:
            raise ArchiveError(
                f"commit {commit.hash[:12]} needs result blob {result.hash[:12]}, which is "
                "neither in the archive nor in the store"
            )
        needed[result.hash] = size

    if needed:
        if _stamp(source) != stamp:
            raise ArchiveError(f"{source} changed while it was being imported")
        _store_blobs(store, source, needed)

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
    return ImportResult(len(new), len(plan.commits) - len(new), len(needed))


def _check_signatures(store: Any, commits: Iterable[Commit], source: Path) -> None:
    """Into a store that signs (a client with a team key), only commits signed with its key.

    Raises:
        ArchiveError: some commit of the archive is unsigned or signed with another key.
    """
    key = getattr(store, "signing_key", None)
    if key is None:
        return
    bad = [c for c in commits if key.verdict(c)]
    if bad:
        raise ArchiveError(
            f"{source}: {len(bad)} commit(s) are not signed with this client's key"
            f" ({key!r}; first: {bad[0].hash[:12]}, {key.verdict(bad[0])}): nothing imported."
            " Export them from a client with the same key"
        )


def _member_kind(member: tarfile.TarInfo) -> tuple[str, str]:
    """Check a member's name and type before anything is read; return (kind, hash)."""
    check_safe(member)
    name = member.name
    shown = repr(name)
    if name.split("/")[0] == LEGACY_ROOT:
        raise OldFormat(name)
    if member.isdir():
        if not _DIR_NAME.match(name):
            raise ArchiveError(f"unexpected directory {shown} in a cashet archive")
        return "dir", ""
    if not member.isfile() or member.issparse():
        raise ArchiveError(f"unsupported member {shown} (type {member.type!r})")
    if name == MANIFEST:
        return "manifest", ""
    m = _COMMIT_NAME.match(name)
    if m:
        return "commit", m.group(1)
    m = _BLOB_NAME.match(name)
    if m:
        return "blob", m.group(1) + m.group(2)
    raise ArchiveError(f"unexpected member {shown} in a cashet archive")


def _scan_member(tar: tarfile.TarFile, member: tarfile.TarInfo, plan: _Plan) -> None:
    kind, h = _member_kind(member)
    if kind == "dir":
        return
    if member.name in plan.seen:
        raise ArchiveError(f"member {member.name!r} appears twice")
    plan.seen.add(member.name)
    f = tar.extractfile(member)
    if f is None:  # pragma: no cover - regular files always have data
        raise ArchiveError(f"cannot read member {member.name!r}")
    if kind == "blob":
        hasher = blake3()
        size = 0
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        actual = hasher.hexdigest()
        if actual != h:
            raise ArchiveError(
                f"blob {member.name!r} is corrupt or forged: its bytes hash to {actual[:16]}…"
            )
        plan.blob_sizes[h] = size
        return
    data = _read_json(f, member)
    if kind == "manifest":
        plan.manifest = _check_manifest(data)
    else:
        plan.commits[h] = _check_commit(h, data)


def _read_json(f: IO[bytes], member: tarfile.TarInfo) -> Any:
    if member.size > MAX_JSON_BYTES:
        raise ArchiveError(f"member {member.name!r} is too large ({member.size} bytes)")
    raw = f.read(MAX_JSON_BYTES + 1)
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"member {member.name!r} is not valid JSON: {exc}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _check_manifest(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArchiveError(f"{MANIFEST} does not describe a cashet archive")
    version = data.get("version")
    if version != VERSION:
        raise ArchiveError(
            f"archive format version {version!r} is not supported (this cashet reads "
            f"version {VERSION}); upgrade cashet to import it"
        )
    return data


def _bad(h: str, why: str) -> ArchiveError:
    return ArchiveError(f"commit {h[:12]} is malformed: {why}")


def _check_commit(h: str, data: Any) -> Commit:
    """Parse and check a commit of an untrusted archive; return it ready to store."""
    if not isinstance(data, dict):
        raise _bad(h, "not a JSON object")
    if data.get("hash") != h:
        raise ArchiveError(f"commit {h[:12]}: the file name and the recorded hash differ")
    td = data.get("task_def")
    if not isinstance(td, dict):
        raise _bad(h, "no task_def")
    _check_fields(h, data, td)
    try:
        commit = commit_from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(h, f"{type(exc).__name__}: {exc}") from exc
    actual = compute_commit_hash(commit)
    # A commit migrated from cashet 0.4.x/0.5.x keeps its old hash, which is not a content
    # hash of ours: it cannot be recomputed (its result blob is still verified). A commit its
    # caller named records its content's digest beside (``stored_json``).
    attested = data.get("content_hash")
    if actual != h and commit.salt != LEGACY_SALT and actual != attested:
        raise ArchiveError(
            f"commit {h[:12]} is forged or damaged: its content hashes to {actual[:12]}"
        )
    for when in (commit.created_at, commit.expires_at, commit.last_accessed):
        if when is not None and when.tzinfo is None:
            raise _bad(h, "a time without a time zone")
    if commit.created_at > utcnow() + CLOCK_SKEW:
        raise ArchiveError(
            f"commit {h[:12]} is dated in the future ({commit.created_at.isoformat()})"
        )
    if commit.status is TaskStatus.RUNNING:
        raise _bad(h, "status 'running' (only finished runs are archived)")
    if (commit.status is TaskStatus.COMPLETED) != (commit.result is not None):
        raise _bad(h, "a completed commit needs a result and a failed one has none")
    return commit


def _check_fields(h: str, data: dict[str, Any], td: dict[str, Any]) -> None:
    """Type-check the raw JSON, so that nothing odd is coerced into the store."""

    def want(ok: bool, what: str) -> None:
        if not ok:
            raise _bad(h, what)

    def opt_hash(value: Any) -> bool:
        return value is None or (isinstance(value, str) and bool(_HASH.match(value)))

    def opt_num(value: Any) -> bool:
        return value is None or (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        )

    def str_map(value: Any) -> bool:
        return value is None or (
            isinstance(value, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        )

    want(isinstance(td.get("func_name"), str) and bool(td["func_name"]), "bad func_name")
    for key in ("func_hash", "args_hash"):
        value = td.get(key)
        want(isinstance(value, str) and bool(_DIGEST.match(value)), f"bad {key}")
    for key in ("func_source", "args_snapshot", "module"):
        want(isinstance(td.get(key, ""), str), f"bad {key}")
    for key in ("cache", "force"):
        want(isinstance(td.get(key, False), bool), f"bad {key}")
    retries = td.get("retries", 0)
    want(isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0, "retries")
    want(opt_num(td.get("timeout")) and opt_num(td.get("ttl")), "bad timeout or ttl")
    want(str_map(td.get("tags")) and str_map(data.get("tags")), "tags must map str to str")
    want(data.get("status") in ("completed", "failed", "running"), "bad status")
    want(opt_hash(data.get("parent_hash")), "bad parent_hash")
    want(data.get("error") is None or isinstance(data["error"], str), "bad error")
    want(opt_num(data.get("compute_seconds")), "bad compute_seconds")
    want(isinstance(data.get("salt", ""), str), "bad salt")
    inputs = data.get("input_hashes") or []
    want(isinstance(inputs, list) and all(opt_hash(x) and x for x in inputs), "input_hashes")
    for key in ("created_at", "expires_at", "last_accessed"):
        value = data.get(key)
        want((value is None and key != "created_at") or isinstance(value, str), f"bad {key}")
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise _bad(h, f"bad {key} {value!r}") from None
    result = data.get("result")
    if result is not None:
        want(isinstance(result, dict), "bad result")
        size = result.get("size")
        want(opt_hash(result.get("hash")) and result.get("hash") is not None, "bad result hash")
        want(isinstance(size, int) and not isinstance(size, bool) and size >= 0, "result size")


def _store_blobs(store: Store, path: Path, needed: dict[str, int]) -> None:
    """Second read: store the blobs the new commits need, each verified again."""
    left = dict(needed)
    with _reading(path) as tar:
        for member in tar:
            m = _BLOB_NAME.match(member.name)
            if m is None or not member.isfile() or member.issparse():
                continue
            h = m.group(1) + m.group(2)
            if h not in left:
                continue
            f = tar.extractfile(member)
            data = f.read() if f is not None else b""
            if len(data) != left[h] or blob_hash(data) != h:
                raise ArchiveError(f"{path} changed while it was being imported (blob {h[:12]})")
            ref: ObjectRef = store.put_blob(data)
            if ref.hash != h:  # pragma: no cover - put_blob hashes what it is given
                raise ArchiveError(f"the store recorded blob {h[:12]} as {ref.hash[:12]}")
            del left[h]
    if left:
        raise ArchiveError(f"{path} changed while it was being imported (blobs went missing)")
