"""The blob store contract: blobs by hash, kept in their stored form, read verified.

A blob store keeps what :mod:`cashet.stores.blobs` makes of a blob (a header byte, then raw
or zstd bytes) under its BLAKE3 hash, and nothing else: no commits, no reference counts, no
leases. A metadata store (``SQLiteStore(path, blobs=...)``) indexes which blobs exist and
which commits use them; the blob store only holds the bytes. Every read is verified against
the hash: a blob found corrupt is deleted (so that storing its bytes again repairs it) and
``BlobCorruptedError`` raised; one not there raises ``BlobMissingError``. Any other failure
(the server unreachable, a permission refused) is a ``StoreError`` whose message never holds
a credential.

``BlobStoreConfig`` is what reopens a blob store in another process (a cluster worker): plain
data, picklable, its ``repr`` never showing an option (options may hold credentials).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any, Protocol

from cashet.protocols import BlobParts
from cashet.stores.blobs import worth_compressing

__all__ = ["BlobStore", "BlobStoreConfig", "compressible"]


@dataclass(frozen=True, slots=True)
class BlobStoreConfig:
    """How to reopen a blob store elsewhere.

    Attributes:
        kind: ``"file"`` or ``"s3"``.
        location: the directory, or ``s3://bucket/prefix``.
        options: the constructor's keyword options, as ``(name, value)`` pairs (credentials
            among them when they were given explicitly: never print a config).
    """

    kind: str
    location: str
    options: tuple[tuple[str, Any], ...] = ()

    def __repr__(self) -> str:  # options may hold a secret key
        return f"BlobStoreConfig({self.kind!r}, {self.location!r})"


class BlobStore(Protocol):
    """Blobs by content hash in their stored form (see :mod:`cashet.stores.blobs`).

    ``put`` and ``put_encoded`` are put-if-absent unless ``replace`` (a content-addressed
    copy already there is the same blob); ``get`` and ``open`` verify what they return.
    """

    @property
    def config(self) -> BlobStoreConfig:
        """What reopens this blob store in another process."""
        ...

    def put(
        self,
        hash: str,
        parts: BlobParts,
        size: int,
        *,
        compress: bool | None = None,
        replace: bool = False,
        inline_below: int = 0,
    ) -> tuple[int, bytes | None]:
        """Store the blob ``hash``: the concatenation of ``parts`` (``size`` bytes), framed
        and compressed (when ``compress``; ``None``: when a sample shrinks) on the way,
        streamed. Return its stored size, and its stored form instead when that is shorter
        than ``inline_below`` (then nothing is stored: the caller keeps those bytes)."""
        ...

    def put_encoded(self, hash: str, encoded: bytes, *, replace: bool = False) -> int:
        """Store a blob already in its stored form; return the stored size."""
        ...

    def get(self, hash: str) -> bytes:
        """The blob's bytes, verified (a large one may come back as a ``bytearray``)."""
        ...

    def open(self, hash: str, size: int) -> AbstractContextManager[IO[bytes]]:
        """The blob (``size`` bytes) as a readable file, verified as it is read: leaving
        the block checks the hash (``BlobCorruptedError`` on a mismatch)."""
        ...

    def stored_size(self, hash: str) -> int | None:
        """The stored size of the blob, or ``None`` when it is not there."""
        ...

    def exists(self, hash: str) -> bool:
        """Whether the blob is there (not read, not verified)."""
        ...

    def delete(self, hash: str) -> None:
        """Remove the blob (nothing when it is not there)."""
        ...

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """Yield ``(hash, stored size)`` of every blob kept."""
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def compressible(parts: BlobParts) -> bool:
    """Probe the largest chunk: compress the blob only if it would shrink."""
    largest = max(parts, key=lambda p: memoryview(p).nbytes)
    return worth_compressing(memoryview(largest).cast("B"))
