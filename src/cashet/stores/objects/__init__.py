"""Blob stores: where a metadata store keeps its blobs' bytes (``blobs=``).

:mod:`~cashet.stores.objects.base` (the ``BlobStore`` contract, ``BlobStoreConfig``),
:mod:`~cashet.stores.objects.files` (``FileBlobStore``: ``objects/ab/cdef…``),
:mod:`~cashet.stores.objects.s3` (``S3BlobStore``, on obstore),
:mod:`~cashet.stores.objects.cached` (``CachedBlobStore``: a local cache in front of a
remote one), :mod:`~cashet.stores.objects.streams` (the readers they share).
"""
