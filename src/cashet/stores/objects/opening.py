"""Open the blob store a ``BlobStoreConfig`` describes (in a cluster worker, or from a URL)."""

from __future__ import annotations

from cashet.errors import StoreError
from cashet.stores.objects.base import BlobStore, BlobStoreConfig

__all__ = ["open_blob_store"]


def open_blob_store(config: BlobStoreConfig) -> BlobStore:
    """The blob store ``config`` describes (credentials not in it come from the environment).

    Raises:
        StoreError: an unknown kind.
    """
    options = dict(config.options)
    if config.kind == "file":
        from cashet.stores.objects.files import FileBlobStore

        return FileBlobStore(config.location, **options)
    if config.kind == "s3":
        from cashet.stores.objects.s3 import S3BlobStore

        return S3BlobStore(**options)
    raise StoreError(f"unknown kind of blob store: {config.kind!r}")
