"""The blobs of ``SQLiteStore``: small ones inline in ``meta.db``, larger ones in its blob
store (``objects/`` files by default, an object store with ``blobs=``), large ones written
and read as streams (issue 13: a 1 GiB result is never held twice). ``meta.db`` indexes
every blob (size, stored size, reference count); the blob store holds the bytes. Every blob
is verified against its hash when read; one found missing or damaged is forgotten, so its
commit is a miss and the next ``submit`` recomputes it (and stores it again: a repair).

A mixin of :class:`~cashet.stores.sqlite.store.SQLiteStore` (``_db``, ``_blobs``,
``inline_threshold`` and ``readonly`` are the store's).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from cashet.errors import (
    BlobCorruptedError,
    BlobMissingError,
    StoreError,
)
from cashet.models import ObjectRef
from cashet.protocols import BlobParts
from cashet.stores.blobs import (
    blob_hash,
    blob_hash_parts,
    decode_blob,
    encode_blob,
    verify_blob,
)
from cashet.stores.objects.base import BlobStore, compressible
from cashet.stores.objects.files import READINTO_MIN
from cashet.stores.sqlite import schema as sql
from cashet.stores.sqlite.connection import Database
from cashet.stores.sqlite.tiny import COMMIT_DATA, FORGET_DATA

__all__ = ["BlobsMixin"]


class BlobsMixin:
    """The blob methods of ``SQLiteStore``."""

    _db: Database
    _blobs: BlobStore
    _inline_threshold: int
    _path: Path
    orphan_grace: float
    readonly: bool
    _remember_lost: Callable[[str], Any]  # ReadOnlyMixin's

    def put_blob(self, data: bytes) -> ObjectRef:
        """Store ``data`` once by content hash (deduplicated), repairing a damaged copy.

        When the blob is already recorded but its copy in the blob store is missing or of
        the wrong size (or its inline bytes do not match), it is rewritten from ``data``.

        Returns:
            The blob's hash and its size in bytes.
        """
        if len(data) >= READINTO_MIN:
            return self._put_large([data], blob_hash(data), len(data))
        return self._put_small(data, blob_hash(data), None)

    def _put_small(self, data: bytes, h: str, encoded: bytes | None) -> ObjectRef:
        ref = ObjectRef(h, len(data))
        if self.readonly:
            return ref  # not stored (see cashet.stores.sqlite.readonly)
        row = self._db.one(sql.BLOB_STATE, (h,))
        if (
            row is not None
            and self._intact(h, row[0], row[1], data)
            # An unreferenced row close to collection is refreshed below, so that it
            # survives until the commit that needs it is recorded.
            and (row[2] > 0 or row[3] > time.time() - self.orphan_grace / 2)
        ):
            return ref
        if encoded is None:
            encoded = encode_blob(data)
        inline = len(encoded) < self._inline_threshold
        if not inline:
            self._put_copy(h, encoded)  # outside the lock: other writers go on
        with self._db.transact() as conn:
            was = conn.execute(sql.BLOB_INFO, (h,)).fetchone()
            conn.execute(
                sql.BLOB_UPSERT,
                (h, len(data), len(encoded), encoded if inline else None, time.time()),
            )
            if inline:
                if was is not None and was[1]:
                    self._blobs.delete(h)  # the blob moved into meta.db
            else:
                # Deletes unlink inside their transaction, so under this lock a file that
                # a concurrent delete removed after our write above is seen missing here.
                self._put_copy(h, encoded)
        return ref

    def _put_copy(self, h: str, encoded: bytes) -> None:
        """Store ``encoded`` in the blob store unless an intact-looking copy is there: a
        create-if-absent put when there is none (an object store's conditional PUT), a
        replacing one over a copy of the wrong size."""
        have = self._blobs.stored_size(h)
        if have != len(encoded):
            self._blobs.put_encoded(h, encoded, replace=have is not None)

    def _has_copy(self, h: str, stored_size: int) -> bool:
        """Whether the blob store holds ``h`` with ``stored_size`` bytes (cheap: no read)."""
        return self._blobs.stored_size(h) == stored_size

    def put_blob_parts(self, parts: BlobParts) -> ObjectRef:
        """Store the concatenation of ``parts`` without joining them in memory.

        Serializers that keep large buffers out of band (``PickleSerializer`` with NumPy
        arrays) hand their chunks here: the blob is hashed, compressed and written chunk
        by chunk. Equivalent to ``put_blob(b"".join(parts))``.
        """
        h, size = blob_hash_parts(parts)
        if self.readonly:
            return ObjectRef(h, size)  # not stored
        if size < READINTO_MIN:
            return self._put_small(b"".join(parts), h, None)
        return self._put_large(parts, h, size)

    def _put_large(self, parts: BlobParts, h: str, size: int) -> ObjectRef:
        """Store a blob of at least ``READINTO_MIN`` bytes, streamed: its stored form is
        written to the file as it is made (no joined copy, no whole compressed copy)."""
        ref = ObjectRef(h, size)
        row = self._db.one(sql.BLOB_STATE, (h,))
        if (
            row is not None
            # Inline bytes of a large blob are not decoded here to be compared (that is
            # the whole blob again in memory): every read verifies them, and a damaged
            # copy is forgotten there, so the next put rewrites it.
            and (row[1] is not None or self._has_copy(h, row[0]))
            and (row[2] > 0 or row[3] > time.time() - self.orphan_grace / 2)
        ):
            return ref
        compress = compressible(parts)
        if not compress and self._has_copy(h, size + 1):
            stored, inline = size + 1, None
        else:  # outside the lock: other writers go on
            stored, inline = self._blobs.put(
                h,
                parts,
                size,
                compress=compress,
                replace=True,
                inline_below=self._inline_threshold,
            )
        with self._db.transact() as conn:
            was = conn.execute(sql.BLOB_INFO, (h,)).fetchone()
            conn.execute(sql.BLOB_UPSERT, (h, size, stored, inline, time.time()))
            if inline is not None:
                if was is not None and was[1]:
                    self._blobs.delete(h)  # the blob moved into meta.db
            elif not self._has_copy(h, stored):
                # a concurrent delete removed it: write it again (raw: no guessing sizes)
                stored, _ = self._blobs.put(h, parts, size, compress=False, replace=True)
                conn.execute(sql.BLOB_UPSERT, (h, size, stored, None, time.time()))
        return ref

    def _intact(self, h: str, stored_size: int, inline: bytes | None, data: bytes) -> bool:
        if inline is not None:
            try:
                return decode_blob(inline, h) == data
            except BlobCorruptedError:
                return False
        return self._has_copy(h, stored_size)

    def get_blob(self, ref: ObjectRef) -> bytes:
        """Return the blob's bytes, verified against its hash.

        Raises:
            BlobMissingError: the blob is not stored, or its copy in the blob store is gone.
            BlobCorruptedError: the stored bytes do not match the hash. A corrupt copy is
                removed, so that storing the same bytes again repairs the blob.
            StoreError: the blob store cannot be reached (an object store down).
        """
        h = ref.hash
        row = self._db.one(sql.BLOB_READ, (h,)) or self._db.one(COMMIT_DATA, (h,))
        if row is None:
            raise BlobMissingError(f"blob {h} not found in the store {self._path}", h)
        inline = row[0]
        try:
            if inline is None:
                return self._blobs.get(h)
            try:
                if not isinstance(inline, bytes):
                    raise BlobCorruptedError(f"blob {h[:16]}… is stored as {type(inline)}", h)
                data = decode_blob(inline, h)
                verify_blob(data, h)
            except BlobCorruptedError as exc:
                raise BlobCorruptedError(f"{exc} (stored inline in {self._db.file})", h) from exc
            return data
        except (BlobMissingError, BlobCorruptedError):
            self._forget_blob(h)
            raise

    def open_blob(self, ref: ObjectRef) -> AbstractContextManager[IO[bytes]] | None:
        """The blob as a file verified as it is read, or ``None`` when it is kept inline.

        For loading a large result without holding its bytes and its value at once (see
        ``protocols.BlobOpener``). A blob found lost or corrupt is forgotten, as by
        :meth:`get_blob`.
        """
        row = self._db.one(sql.BLOB_READ, (ref.hash,))
        if row is None or row[0] is not None:
            return None  # unknown (get_blob says so) or inline (small)
        return self._opened(ref)

    @contextmanager
    def _opened(self, ref: ObjectRef) -> Iterator[IO[bytes]]:
        try:
            with self._blobs.open(ref.hash, ref.size) as f:
                yield f
        except (BlobMissingError, BlobCorruptedError):
            self._forget_blob(ref.hash)
            raise

    def _forget_blob(self, h: str) -> None:
        """Drop the index row of a blob found lost, so lookups stop returning its commits.

        ``put_blob`` of the same bytes re-creates the row (counting the commits that point
        at it), which is how a re-run repairs the cache.
        """
        if self.readonly:
            self._remember_lost(h)
            return
        with suppress(StoreError), self._db.transact() as conn:
            conn.execute(sql.DELETE_BLOB, (h,))
            conn.execute(FORGET_DATA, (h,))  # and its copies in commit rows (tiny.py)

    def has_blob(self, hash: str) -> bool:
        """Return whether the blob is recorded and its copy in the blob store (if not
        inline) is present with its size."""
        row = self._db.one(sql.BLOB_INFO, (hash,))
        if row is None:
            return self._db.one(COMMIT_DATA, (hash,)) is not None  # kept in a commit row
        return not row[1] or self._has_copy(hash, row[0])

    # commits
