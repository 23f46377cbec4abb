"""Pure encoding of commits and blobs, shared by every store and by export/import.

* ``commit_to_dict`` / ``commit_from_dict``: a JSON-able, versioned form of a commit.
* ``compute_commit_hash``: BLAKE3 over the canonical JSON of everything in a commit except its
  hash and ``last_accessed``; import recomputes it to reject forged commits.
* ``encode_blob`` / ``decode_blob``: optional zstd compression with a one-byte header.
* ``blob_hash``: BLAKE3 hex digest of blob bytes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from blake3 import blake3

from cashet.errors import BlobCorruptedError
from cashet.hashing._blake import MULTITHREAD_MIN, new_hasher
from cashet.models import Commit, ObjectRef, TaskDef, TaskStatus

__all__ = [
    "BLOB_RAW",
    "BLOB_ZSTD",
    "COMMIT_FORMAT",
    "blob_hash",
    "blob_hash_parts",
    "commit_from_dict",
    "commit_from_json",
    "commit_to_dict",
    "commit_to_json",
    "compute_commit_hash",
    "seal_commit",
    "decode_blob",
    "encode_blob",
    "verify_blob",
    "worth_compressing",
]

COMMIT_FORMAT = 1

BLOB_RAW = b"\x00"
BLOB_ZSTD = b"\x01"
#: Compress only blobs at least this large; smaller ones rarely shrink enough to pay.
_COMPRESS_MIN = 512
#: Keep the compressed form only when it saves at least this fraction.
_COMPRESS_GAIN = 0.9


class _ZstdPool:
    """zstd contexts, each lent to one thread at a time.

    A context must not be used by two threads at once ("Operation not authorized at current
    processing stage"), and a multithreaded compressor must be neither used nor freed in a
    forked child: its worker threads stayed in the parent, and freeing it joins them, which
    hangs. So every context made stays referenced here (their number is the peak number of
    threads compressing at once), and a forked child keeps its parent's for good, unused.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._made: list[Any] = []

    @contextmanager
    def lend(self) -> Iterator[Any]:
        with self._lock:
            ctx = self._idle.pop() if self._idle else None
        if ctx is None:
            ctx = self._make()
            with self._lock:
                self._made.append(ctx)
        try:
            yield ctx
        finally:
            with self._lock:
                self._idle.append(ctx)

    def after_fork_in_child(self) -> None:
        _of_parent.extend(self._made)
        self._reset()


def _new_compressor() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=3, threads=-1 if _cpu_count() > 1 else 0)


def _new_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor()


_compressors = _ZstdPool(_new_compressor)
_decompressors = _ZstdPool(_new_decompressor)
_of_parent: list[Any] = []


def _after_fork_in_child() -> None:
    _compressors.after_fork_in_child()
    _decompressors.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def blob_hash(data: bytes | bytearray | memoryview) -> str:
    """Return the BLAKE3 hex digest of ``data`` (multithreaded for large inputs)."""
    n = memoryview(data).nbytes if isinstance(data, memoryview) else len(data)
    if n < MULTITHREAD_MIN:
        return blake3(data).hexdigest()
    h = new_hasher(n)
    h.update(data)
    return h.hexdigest()


def blob_hash_parts(parts: Sequence[bytes | bytearray | memoryview]) -> tuple[str, int]:
    """Return the digest and length of the concatenation of ``parts`` (without joining)."""
    size = sum(memoryview(p).nbytes for p in parts)
    h = new_hasher(size)
    for p in parts:
        h.update(p)
    return h.hexdigest(), size


def verify_blob(data: bytes | bytearray | memoryview, expected: str) -> None:
    """Raise ``BlobCorruptedError`` when ``data`` does not hash to ``expected``."""
    actual = blob_hash(data)
    if actual != expected:
        raise BlobCorruptedError(
            f"blob {expected[:16]}… is corrupt: its bytes hash to {actual[:16]}…", expected
        )


def worth_compressing(data: bytes | memoryview) -> bool:
    """Probe a few slices of a large blob: compress the whole only if the sample shrinks.

    Compressing 100 MiB of incompressible floats costs far more than writing them, so a
    large blob is compressed only when three 64 KiB samples compress well.
    """
    n = len(data)
    if n <= 1 << 20:
        return True
    view = memoryview(data)
    step = 64 << 10
    sample = b"".join(bytes(view[i : i + step]) for i in (0, n // 2, n - step))
    with _compressors.lend() as zc:
        return len(zc.compress(sample)) < len(sample) * _COMPRESS_GAIN


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def encode_blob(data: bytes | memoryview) -> bytes:
    """Return the stored form of ``data``: a header byte, then raw or zstd bytes.

    zstd is kept only when it makes the blob at least 10% smaller.
    """
    if len(data) >= _COMPRESS_MIN and worth_compressing(data):
        with _compressors.lend() as zc:
            packed: bytes = zc.compress(data)
        if len(packed) < len(data) * _COMPRESS_GAIN:
            return BLOB_ZSTD + packed
    return BLOB_RAW + (data if isinstance(data, bytes) else bytes(data))


def decode_blob(stored: bytes | memoryview, blob_hash_hint: str = "") -> bytes:
    """Invert :func:`encode_blob`."""
    if not stored:
        raise BlobCorruptedError(f"blob {blob_hash_hint[:16]}… is empty", blob_hash_hint)
    head = bytes(stored[:1])
    body = memoryview(stored)[1:]
    if head == BLOB_RAW:
        return bytes(body)
    if head == BLOB_ZSTD:
        try:
            with _decompressors.lend() as zd:
                out: bytes = zd.decompress(body)
        except Exception as exc:
            raise BlobCorruptedError(
                f"blob {blob_hash_hint[:16]}… cannot be decompressed: {exc}", blob_hash_hint
            ) from exc
        return out
    raise BlobCorruptedError(
        f"blob {blob_hash_hint[:16]}… has an unknown header byte {head!r}", blob_hash_hint
    )


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def task_def_to_dict(td: TaskDef) -> dict[str, Any]:
    return {
        "func_name": td.func_name,
        "func_hash": td.func_hash,
        "args_hash": td.args_hash,
        "func_source": td.func_source,
        "args_snapshot": td.args_snapshot,
        "module": td.module,
        "cache": td.cache,
        "force": td.force,
        "retries": td.retries,
        "timeout": td.timeout,
        "ttl": td.ttl,
        "tags": dict(td.tags),
    }


def task_def_from_dict(d: dict[str, Any]) -> TaskDef:
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
    )


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
    return json.dumps(_content_dict(c), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _hash_content(content: str) -> str:
    return blake3(b"cashet.commit.v1\x00" + content.encode()).hexdigest()


def compute_commit_hash(c: Commit) -> str:
    """Return the content hash of ``c`` (its ``hash`` and ``last_accessed`` are ignored)."""
    return _hash_content(_content_json(c))


def seal_commit(c: Commit) -> str:
    """Set ``c.hash`` from its content and return its stored JSON (one serialization)."""
    content = _content_json(c)
    c.hash = _hash_content(content)
    accessed = json.dumps(_dt(c.last_accessed))
    # The content JSON is an object with sorted keys; append the two non-content fields.
    return f'{content[:-1]},"hash":"{c.hash}","last_accessed":{accessed}}}'


def commit_to_dict(c: Commit) -> dict[str, Any]:
    """Return a JSON-able dict of ``c``, hash and last access included."""
    d = _content_dict(c)
    d["hash"] = c.hash
    d["last_accessed"] = _dt(c.last_accessed)
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
    )


def commit_to_json(c: Commit) -> str:
    return json.dumps(commit_to_dict(c), separators=(",", ":"), ensure_ascii=False)


def commit_from_json(s: str | bytes) -> Commit:
    return commit_from_dict(json.loads(s))
