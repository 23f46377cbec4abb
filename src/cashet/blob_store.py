"""Public import path of the blob stores: ``from cashet.blob_store import S3BlobStore``.

Where a metadata store keeps the bytes of its blobs: ``SQLiteStore(path, blobs=...)``.
``S3BlobStore`` needs the ``s3`` extra (``pip install "cashet[s3]"``, obstore), imported
only when one is made.
"""

from __future__ import annotations

from cashet.stores.objects.base import BlobStore, BlobStoreConfig
from cashet.stores.objects.cached import CachedBlobStore
from cashet.stores.objects.files import FileBlobStore
from cashet.stores.objects.s3 import S3BlobStore

__all__ = ["BlobStore", "BlobStoreConfig", "CachedBlobStore", "FileBlobStore", "S3BlobStore"]
