"""``CachedBlobStore``: a local directory in front of a remote blob store.

``Client(store=..., local_cache=".cashet")`` puts one in front of the store's object store:
a hit's blob is served from the local file when it is there (verified as every read is),
and fetched from the remote store once otherwise: streamed into a local file, hashed on the
way, renamed into place only when it verified. Writes go to both. The remote store stays
the truth: existence, sizes, listing and deletion are its (a deletion also drops the local
copy). A local copy found corrupt is removed and the blob fetched again.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from typing import IO

from cashet.errors import BlobError, StoreError
from cashet.protocols import BlobParts
from cashet.stores.blobs import BLOB_RAW
from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.objects.files import FileBlobStore, unlink

__all__ = ["CachedBlobStore"]


class CachedBlobStore:
    """A ``BlobStore`` serving reads from ``local`` first, then ``remote`` (fetched once).

    Args:
        remote: the shared blob store (``S3BlobStore``).
        local: the local cache: a ``FileBlobStore`` or its directory.
    """

    def __init__(self, remote: BlobStore, local: FileBlobStore | str | os.PathLike[str]) -> None:
        self.remote = remote
        self.local = local if isinstance(local, FileBlobStore) else FileBlobStore(local)

    def __repr__(self) -> str:
        return f"CachedBlobStore({self.remote!r}, local={self.local.root!r})"

    @property
    def config(self) -> BlobStoreConfig:
        """The remote store's: the cache is this machine's, a worker elsewhere has none."""
        return self.remote.config

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
        """Store the blob remotely, and keep a local copy (a result is often read back)."""
        stored, inline = self.remote.put(
            hash, parts, size, compress=compress, replace=replace, inline_below=inline_below
        )
        if inline is None:
            with suppress(StoreError):  # a cache that cannot be written is no failure
                self.local.put(hash, parts, size, compress=compress)
        return stored, inline

    def put_encoded(self, hash: str, encoded: bytes, *, replace: bool = False) -> int:
        """Store the blob remotely and locally."""
        stored = self.remote.put_encoded(hash, encoded, replace=replace)
        with suppress(StoreError):
            self.local.put_encoded(hash, encoded)
        return stored

    def get(self, hash: str) -> bytes:
        """The local copy, verified; else the remote one, kept locally for next time."""
        if self.local.exists(hash):
            with suppress(BlobError, StoreError):  # a corrupt copy is removed: fetch again
                return self.local.get(hash)
        data = self.remote.get(hash)
        with suppress(StoreError):
            self.local.put(hash, [data], len(data))
        return data

    def open(self, hash: str, size: int) -> AbstractContextManager[IO[bytes]]:
        """The local copy as a verified file, fetched first (streamed) when absent."""
        if not self.local.exists(hash):
            try:
                self._fetch(hash, size)
            except OSError:  # the cache cannot be written: read the remote one
                return self.remote.open(hash, size)
        return self.local.open(hash, size)

    def _fetch(self, hash: str, size: int) -> None:
        """Copy the remote blob into the cache (raw), renamed into place once verified.

        Raises:
            BlobError: the remote blob is missing or corrupt (nothing is left behind).
            OSError: the local file cannot be written.
        """
        path = self.local.path(hash)
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{name[:8]}-{secrets.token_hex(6)}")
        try:
            with open(tmp, "xb") as f, self.remote.open(hash, size) as src:
                f.write(BLOB_RAW)
                shutil.copyfileobj(src, f, 8 << 20)
            os.replace(tmp, path)  # only now: leaving the remote block verified it
        except BaseException:
            unlink(tmp)
            raise

    def stored_size(self, hash: str) -> int | None:
        """The remote blob's stored size."""
        return self.remote.stored_size(hash)

    def exists(self, hash: str) -> bool:
        """Whether the remote store has the blob."""
        return self.remote.exists(hash)

    def delete(self, hash: str) -> None:
        """Delete the blob remotely and its local copy."""
        self.local.delete(hash)
        self.remote.delete(hash)

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """The remote store's blobs."""
        return self.remote.iter_blobs()

    def close(self) -> None:
        """Close both."""
        self.remote.close()
        self.local.close()
