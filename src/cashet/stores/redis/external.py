"""The blobs of a Redis store kept in a blob store (``RedisStore(url, blobs=S3BlobStore(...))``).

Redis keeps every blob's meta key, reference count and orphan entry as ever; a blob whose
stored form is at least ``inline_threshold`` bytes has its bytes in the blob store instead
of data keys (meta ``n`` = -1). Smaller ones stay in Redis. The object is written before
its meta key is published, so a meta key never names an object not yet written; the
object of a blob dropped in Redis (evicted, deleted, discarded) is deleted by the store
afterwards (``blob:gone``, :func:`reap`). A blob missing or corrupt in the blob store is a
miss: its meta key is dropped, so the next run recomputes and stores it again.

Blob store IO is a :class:`~cashet.stores.redis.calls.RedisCall` whose ``io`` the driver
runs (the async one in a worker thread), so these flows stay shared by both drivers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from cashet.errors import BlobError
from cashet.models import ObjectRef
from cashet.stores.blobs import blob_hash_parts, encode_blob
from cashet.stores.redis.calls import OpFlow, RedisCall, run_script, text
from cashet.stores.redis.keys import BLOBS_GONE, DISCARD_BLOB, HAVE_BLOB, PUT_BLOB, now_us

if TYPE_CHECKING:
    from cashet.stores.objects.base import BlobStore
    from cashet.stores.redis.ops import Ops

__all__ = ["EXTERNAL", "discard", "get_external", "opened", "put_external", "reap"]

#: The meta key's chunk count of a blob kept in the blob store.
EXTERNAL = -1
#: Results at least this large are streamed to the blob store, never encoded whole.
_STREAMED = 1 << 20
#: Objects deleted per ``reap`` round.
_REAP = 256


def io(op: str, call: Any) -> RedisCall:
    """A step on the blob store (not Redis), run by the driver."""
    return RedisCall(op, (), io=call)


def put_external(
    ops: Ops, blobs: BlobStore, parts: Sequence[bytes | memoryview]
) -> OpFlow[ObjectRef]:
    """Store a blob: in the blob store, published in Redis; small ones in Redis as ever."""
    h, size = blob_hash_parts(parts)
    ref = ObjectRef(h, size)
    k = ops.keys
    op = f"store blob {h[:16]}"
    now = now_us()
    if (yield run_script(op, HAVE_BLOB, (), k.prefix, h, now, "1")) == 1:
        return ref
    inline: bytes | None = None
    if size < _STREAMED:
        encoded = encode_blob(b"".join(parts))
        if len(encoded) < ops.inline_threshold:
            inline = encoded
        else:
            stored = yield io(op, lambda: blobs.put_encoded(h, encoded))
    else:
        stored, inline = yield io(
            op, lambda: blobs.put(h, parts, size, inline_below=ops.inline_threshold)
        )
    gen = secrets.token_hex(6)
    if inline is not None:
        meta = (k.prefix, h, size, len(inline), "1", now, gen, inline)
    else:
        meta = (k.prefix, h, size, stored, "e", now, gen, b"")
    yield RedisCall(op, (0, *meta), PUT_BLOB, bulky=True)
    return ref


def get_external(ops: Ops, blobs: BlobStore, h: str, gen: str) -> OpFlow[bytes]:
    """Read a blob kept in the blob store, verified; one missing or corrupt there is
    dropped here (the commits using it become misses)."""
    op = f"read blob {h[:16]}"
    try:
        data: bytes = yield io(op, lambda: blobs.get(h))
    except BlobError:
        yield from discard(ops, h, gen)
        raise
    return data


def discard(ops: Ops, h: str, gen: str) -> OpFlow[None]:
    """Drop a blob found missing or corrupt in the blob store (unless rewritten since)."""
    yield run_script(f"drop blob {h[:16]}", DISCARD_BLOB, (), ops.keys.prefix, h, gen)
    yield from ops._dropped()


@contextmanager
def opened(blobs: BlobStore, ref: ObjectRef, discard: Any) -> Iterator[IO[bytes]]:
    """The blob as a file verified as it is read (the sync store's ``open_blob``)."""
    try:
        with blobs.open(ref.hash, ref.size) as f:
            yield f
    except BlobError:
        discard()
        raise


def reap(ops: Ops, blobs: BlobStore) -> OpFlow[int]:
    """Delete the objects of blobs dropped in Redis (unless put again since)."""
    k = ops.keys
    gone = k.prefix + BLOBS_GONE
    deleted = 0
    while True:
        batch = yield RedisCall("delete dropped blobs", ("SPOP", gone, _REAP))
        for raw in batch or []:
            h = text(raw)
            if not (yield RedisCall("delete dropped blobs", ("EXISTS", k.blob_meta(h)))):
                yield io(f"delete blob {h[:16]}", lambda h=h: blobs.delete(h))
                deleted += 1
        if len(batch or []) < _REAP:
            return deleted
