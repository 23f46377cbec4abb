"""The canonical form of a commit: its JSON, its content hash and its sealing.

Pure (no IO), shared by every store, the call flow (which seals each new commit) and
export/import (which recomputes the hash to reject forged commits).

* ``commit_to_dict`` / ``commit_from_dict``: a JSON-able, versioned form of a commit.
* ``compute_commit_hash``: BLAKE3 over the canonical JSON of everything in a commit except its
  hash and ``last_accessed``.
* ``seal_commit``: set a new commit's hash and return its stored JSON in one serialization.
* ``verified_commit``: decode a stored commit and check it against the hash it is kept
  under (stores call it on every commit they read: metadata is verified like blobs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from blake3 import blake3

from cashet.hashing.sealing import COMMIT_FORMAT, content_json, encode_value
from cashet.models import Commit, ObjectRef, TaskDef, TaskStatus

__all__ = [
    "COMMIT_FORMAT",
    "Decoder",
    "commit_from_dict",
    "commit_from_json",
    "commit_to_dict",
    "commit_to_json",
    "decode_whole",
    "compute_commit_hash",
    "seal_commit",
    "stored_json",
    "task_def_from_dict",
    "check_commit_hash",
    "sealed_content",
    "task_def_to_dict",
    "verified_commit",
    "verified_content",
    "content_digest",
]

def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def task_def_to_dict(td: TaskDef) -> dict[str, Any]:
    """Return the JSON-able form of a task definition (part of a commit's content)."""
    d: dict[str, Any] = {
        "func_name": td.func_name,
        "func_hash": td.func_hash,
        "args_hash": td.args_hash,
        "func_source": td.func_source,
        "args_snapshot": _text(td.args_snapshot),
        "module": td.module,
        "cache": td.cache,
        "force": td.force,
        "retries": td.retries,
        "timeout": td.timeout,
        "ttl": td.ttl,
        "tags": dict(td.tags),
    }
    if td.manifest:  # absent from commits made before manifests: their hashes stay
        d["manifest"] = td.manifest
    return d


def _text(value: object) -> str:
    """A snapshot as text (the published cashet's ``TaskDef`` took bytes)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def task_def_from_dict(d: dict[str, Any]) -> TaskDef:
    """Invert :func:`task_def_to_dict` (missing optional fields take their defaults)."""
    return TaskDef(
        func_name=str(d["func_name"]),
        func_hash=str(d["func_hash"]),
        args_hash=str(d["args_hash"]),
        func_source=str(d.get("func_source", "")),
        args_snapshot=str(d.get("args_snapshot", "")),
        module=str(d.get("module", "")),
        cache=bool(d.get("cache", True)),
        force=bool(d.get("force", False)),
        retries=int(d.get("retries", 0)),
        timeout=None if d.get("timeout") is None else float(d["timeout"]),
        ttl=None if d.get("ttl") is None else float(d["ttl"]),
        tags={str(k): str(v) for k, v in dict(d.get("tags") or {}).items()},
        manifest=_manifest(d.get("manifest")),
    )


def _manifest(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"a manifest is a JSON object, not {type(value).__name__}")
    return value


def _content_dict(c: Commit) -> dict[str, Any]:
    """Everything that identifies a commit (not its hash, not its last access)."""
    return {
        "format": COMMIT_FORMAT,
        "task_def": task_def_to_dict(c.task_def),
        "status": c.status.value,
        "created_at": _dt(c.created_at),
        "result": None if c.result is None else {"hash": c.result.hash, "size": c.result.size},
        "parent_hash": c.parent_hash,
        "error": c.error,
        "tags": dict(sorted(c.tags.items())),
        "compute_seconds": c.compute_seconds,
        "expires_at": _dt(c.expires_at),
        "input_hashes": list(c.input_hashes),
        "salt": c.salt,
    }


def _content_json(c: Commit) -> str:
    # the text of json.dumps(_content_dict(c), sort_keys=True, separators=(",", ":"),
    # ensure_ascii=False), written without the dict (hashing/sealing.py)
    return content_json(c)


def _hash_content(content: str) -> str:
    return blake3(_COMMIT_DOMAIN + content.encode()).hexdigest()


_COMMIT_DOMAIN = b"cashet.commit.v1\x00"


def content_digest(content: bytes) -> str:
    """The commit hash of the content text whose UTF-8 is ``content`` (what
    :func:`verified_content` checks; for a store that has the bytes already)."""
    return blake3(_COMMIT_DOMAIN + content).hexdigest()


def compute_commit_hash(c: Commit) -> str:
    """Return the content hash of ``c`` (its ``hash`` and ``last_accessed`` are ignored)."""
    return _hash_content(_content_json(c))


def seal_commit(c: Commit) -> str:
    """Set ``c.hash`` from its content and return its stored JSON (one serialization)."""
    content = _content_json(c)
    c.hash = _hash_content(content)
    accessed = encode_value(_dt(c.last_accessed))  # (ASCII: as json.dumps writes it)
    # The content JSON is an object with sorted keys; append the two non-content fields.
    return f'{content[:-1]},"hash":"{c.hash}","last_accessed":{accessed}{_signature(c)}}}'


def _signature(c: Commit) -> str:
    """The stored tail of a signed commit (``""`` when unsigned)."""
    sig = c.signature
    return "" if not sig else f',"signature":{json.dumps(sig)}'


def commit_to_dict(c: Commit) -> dict[str, Any]:
    """Return a JSON-able dict of ``c``, hash and last access included."""
    d = _content_dict(c)
    d["hash"] = c.hash
    d["last_accessed"] = _dt(c.last_accessed)
    if c.signature:
        d["signature"] = c.signature
    return d


def commit_from_dict(d: dict[str, Any]) -> Commit:
    """Rebuild a commit from :func:`commit_to_dict` output (no hash check: see import)."""
    res = d.get("result")
    return Commit(
        hash=str(d["hash"]),
        task_def=task_def_from_dict(d["task_def"]),
        status=TaskStatus.parse(d["status"]),
        created_at=datetime.fromisoformat(d["created_at"]),
        result=None if res is None else ObjectRef(str(res["hash"]), int(res["size"])),
        parent_hash=d.get("parent_hash"),
        error=d.get("error"),
        tags={str(k): str(v) for k, v in dict(d.get("tags") or {}).items()},
        compute_seconds=d.get("compute_seconds"),
        expires_at=_parse_dt(d.get("expires_at")),
        input_hashes=tuple(d.get("input_hashes") or ()),
        salt=str(d.get("salt", "")),
        last_accessed=_parse_dt(d.get("last_accessed")),
        signature=_signature_of(d.get("signature")),
    )


def _signature_of(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def commit_to_json(c: Commit) -> str:
    """Return :func:`commit_to_dict` as compact JSON (what stores keep and archives hold)."""
    return json.dumps(commit_to_dict(c), separators=(",", ":"), ensure_ascii=False)


def commit_from_json(s: str | bytes) -> Commit:
    """Invert :func:`commit_to_json` (no hash check)."""
    return commit_from_dict(json.loads(s))


_HASH_KEY = ',"hash":"'


#: How a verified commit's content text becomes its commit: ``decode(content, hash)``
#: (default: decoded whole; ``hashing.lazy.decode_lazily``: its tail when first read).
Decoder = Callable[[str, str], Commit]


def decode_whole(content: str, commit_hash: str) -> Commit:
    """The default :data:`Decoder`: ``json.loads`` and :func:`commit_from_dict`."""
    d = json.loads(content)
    d["hash"] = commit_hash
    return commit_from_dict(d)


def _verified_sealed(body: str, expected_hash: object, decode: Decoder) -> Commit | None:
    """The fast path of :func:`verified_commit`, for the stored form ``seal_commit`` and
    ``stored_json`` write (the content JSON, then the hash and the last access): hash the
    content text as it is and decode that very text, instead of decoding everything and
    serializing it again. ``None`` when the body is not in that form or does not verify."""
    cut = body.rfind(_HASH_KEY)  # the top-level key: it follows the whole content
    if cut <= 0:
        return None
    start = cut + len(_HASH_KEY)
    want = body[start : start + 64] if expected_hash is None else expected_hash
    content = body[:cut] + "}"
    if _hash_content(content) != want:
        return None
    commit = decode(content, str(want))  # only verified text; of the tail, only a signature
    sig = body.find(_SIGNATURE_KEY, start + 64)
    if sig > 0:
        try:
            tail = json.loads("{" + body[sig + 1 :])  # the signature is the tail's last key
        except ValueError:
            return commit  # a damaged signature: unsigned (never served when keys are on)
        commit.signature = _signature_of(tail.get("signature"))
    return commit


_SIGNATURE_KEY = ',"signature":'


def sealed_content(c: Commit) -> str | None:
    """The canonical content text of ``c`` when its hash is that text's (a sealed commit:
    every commit the call flow makes), else ``None`` (a caller-named or migrated commit).

    What a store may keep instead of the whole stored form: :func:`verified_content`
    turns it back into the commit, checked against the hash the store keeps beside it.
    """
    body = c.sealed_json
    if body:
        cut = body.rfind(_HASH_KEY)
        if cut > 0 and body[cut + len(_HASH_KEY) : cut + len(_HASH_KEY) + 64] == c.hash:
            return body[:cut] + "}"
    if c.salt == LEGACY_SALT:
        return None
    content = _content_json(c)
    return content if _hash_content(content) == c.hash else None


def verified_content(content: str, expected_hash: str, decode: Decoder = decode_whole) -> Commit:
    """The commit whose canonical content text is ``content``, checked against
    ``expected_hash`` (what :func:`sealed_content` gave, stored apart from its hash), then
    decoded with ``decode`` (see :data:`Decoder`).

    Raises:
        ValueError: ``content`` does not hash to ``expected_hash``, or is not a commit.
    """
    if _hash_content(content) != expected_hash:
        raise ValueError(f"its content does not hash to {str(expected_hash)[:16]}...")
    try:
        return decode(content, expected_hash)
    except Exception as exc:  # verified text that is not a commit: all one verdict
        raise ValueError(f"not a readable commit ({type(exc).__name__}: {exc})") from None


def stored_json(c: Commit) -> str:
    """The stored form of a commit whose hash is set: what :func:`seal_commit` returns,
    which :func:`verified_commit` checks fastest.

    A commit named by its caller (a hash that is not its content's: the published cashet's
    store protocol lets a caller choose it) also records its content's digest as
    ``content_hash``, so that it is verified on read like any other."""
    accessed = json.dumps(_dt(c.last_accessed))
    content = _content_json(c)
    attest = ""
    if c.salt != LEGACY_SALT:
        actual = _hash_content(content)
        if actual != c.hash:
            attest = f',"{_ATTESTED}":"{actual}"'
    return f'{content[:-1]}{attest},"hash":"{c.hash}","last_accessed":{accessed}{_signature(c)}}}'


#: The field of a caller-named commit's stored form that holds its content's digest.
_ATTESTED = "content_hash"


#: The ``salt`` of every commit migrated from the published cashet 0.4.x/0.5.x: it keeps its
#: old hash, which this content hash cannot reproduce. Such a commit is verified by its
#: recorded hash and its result blob (checked on every read) only; it is never a cache hit.
LEGACY_SALT = "legacy:cashet-0.4/0.5"


def verified_commit(
    body: object, expected_hash: object = None, decode: Decoder = decode_whole
) -> Commit:
    """Decode a stored commit and check that it is the commit ``expected_hash`` names
    (``None``: the hash the commit records, when the store has no other).

    ``decode`` turns the verified content into the commit (see :data:`Decoder`; a body not
    in the sealed form is decoded whole). ``body`` is what a store kept (``commit_to_json``
    text, or its UTF-8 bytes); it may be
    damaged in any way (a flipped bit, a value of another type), so every failure is
    reported as one ``ValueError``.

    Raises:
        ValueError: the body is not a commit, or does not hash to ``expected_hash`` (its
            recorded hash and its content's hash must both equal it). The message says which.
    """
    try:
        if isinstance(body, bytes | bytearray | memoryview):
            body = bytes(body).decode()
        if not isinstance(body, str):
            raise TypeError(f"stored as {type(body).__name__}, not JSON text")
        fast = _verified_sealed(body, expected_hash, decode)
        if fast is not None:
            return fast
        d = json.loads(body)
        attested = d.pop(_ATTESTED, None)
        commit = commit_from_dict(d)
        actual = compute_commit_hash(commit)
    except Exception as exc:  # damaged data may fail anywhere in decoding: all one verdict
        raise ValueError(f"not a readable commit ({type(exc).__name__}: {exc})") from None
    if expected_hash is None:
        expected_hash = commit.hash
    if commit.hash != expected_hash:
        raise ValueError(f"it records the hash {commit.hash[:16]}... instead")
    if actual != expected_hash and commit.salt != LEGACY_SALT and actual != attested:
        raise ValueError(f"its content hashes to {actual[:16]}... instead")
    return commit


def check_commit_hash(c: Commit) -> None:
    """Refuse to store a commit without a hash.

    A commit is normally named by its content's hash (:func:`seal_commit`); one named by its
    caller is accepted too and stored with its content's digest beside (see
    :func:`stored_json`), so both verify when read.

    Raises:
        ValueError: ``c`` has no hash.
    """
    if not c.hash:
        raise ValueError("a commit needs its hash (see cashet.hashing.commits.seal_commit)")
