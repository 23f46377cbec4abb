"""``S3BlobStore``: blobs in an S3 bucket (or any S3-protocol server), on obstore.

Objects are named like the files of ``FileBlobStore``: ``<prefix>/ab/cdef…``, each holding
a blob's stored form (:mod:`cashet.stores.blobs`), so a bucket can be filled by copying an
``objects/`` directory. A small put is atomic create-if-absent (``PutMode.Create``: a
conditional PUT); a large one is streamed as a multipart upload after a ``HEAD`` found it
absent (S3 completes a multipart upload atomically, and two writers of one hash write the
same blob). Reads stream the object and verify it against its hash; a corrupt object is
deleted, so that storing its bytes again repairs it.

Credentials: the arguments, else the usual AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``...),
read by obstore. They never appear in a ``repr``, an error or a log line: every error
message from obstore is cut to its first line and scrubbed of the keys given.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import timedelta
from typing import IO, Any, Literal, cast

from cashet import _process
from cashet._humanize import mask_url
from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.protocols import BlobParts
from cashet.stores.blobs import (
    _COMPRESS_MIN,
    BLOB_RAW,
    read_encoded,
    verify_blob,
    write_encoded,
)
from cashet.stores.objects.base import BlobStoreConfig, compressible
from cashet.stores.objects.streams import ChunkReader, download_raw, verified_reader

__all__ = ["S3BlobStore"]

_HEX = frozenset("0123456789abcdef")
#: Blobs read whole at least this large come back as a ``bytearray`` (as FileBlobStore's).
_READINTO_MIN = 1 << 20
#: Multipart part size, and the chunk size of downloads.
_PART = 8 << 20
#: Downloads come in chunks of this size (small: each is hashed while in the CPU's cache).
_READ = 1 << 20
#: Blobs below this are sent in one conditional PUT (joined in memory: they are small).
_ONE_PUT = 5 << 20


class S3BlobStore:
    """Blobs in an S3 bucket (a ``BlobStore``). Needs ``cashet[s3]`` (obstore).

    Args:
        bucket: the bucket (it must exist).
        prefix: the key prefix under which blobs are kept (``team/cache``: no slashes at
            either end needed).
        endpoint: the server's URL, for an S3-protocol server other than AWS (MinIO, R2,
            a local moto server); default: AWS, or ``AWS_ENDPOINT_URL``.
        region: the bucket's region; default: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.
        access_key_id: default: ``AWS_ACCESS_KEY_ID``.
        secret_access_key: default: ``AWS_SECRET_ACCESS_KEY``.
        allow_http: allow a plain ``http://`` endpoint (a server on loopback).

    Raises:
        StoreError: obstore is not installed, or the configuration is refused.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        allow_http: bool = False,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.region = region
        self.allow_http = allow_http
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._secrets = tuple(s for s in (access_key_id, secret_access_key) if s)
        self._pid = -1
        self._client: Any = None
        self._connect()

    def _connect(self) -> Any:
        """obstore's client, made again in a forked child (its runtime stayed behind)."""
        pid = _process.current_pid()
        if self._client is not None and self._pid == pid:
            return self._client
        try:
            from obstore.store import S3Store
        except ImportError as exc:
            raise StoreError("S3BlobStore needs obstore: pip install 'cashet[s3]'") from exc
        config: dict[str, Any] = {}
        if self.endpoint:
            config["endpoint"] = self.endpoint
        if self.region:
            config["region"] = self.region
        if self._access_key_id:
            config["access_key_id"] = self._access_key_id
        if self._secret_access_key:
            config["secret_access_key"] = self._secret_access_key
        try:
            self._client = S3Store(
                self.bucket,
                prefix=self.prefix or None,
                client_options={"allow_http": self.allow_http, "connect_timeout": "5s"},
                retry_config={
                    "max_retries": 3,
                    "retry_timeout": timedelta(seconds=20),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=2),
                        "base": 2,
                    },
                },
                **config,
            )
        except Exception as exc:
            raise StoreError(f"cannot configure {self!r}: {self._scrub(exc)}") from None
        self._pid = pid
        return self._client

    def __repr__(self) -> str:
        where = f", endpoint={mask_url(self.endpoint)!r}" if self.endpoint else ""
        return f"S3BlobStore({self.bucket!r}, prefix={self.prefix!r}{where})"

    @property
    def config(self) -> BlobStoreConfig:
        """What reopens this blob store elsewhere. Credentials given as arguments travel in
        its options (never shown); those read from the environment are read there again."""
        options = (
            ("bucket", self.bucket),
            ("prefix", self.prefix),
            ("endpoint", self.endpoint),
            ("region", self.region),
            ("access_key_id", self._access_key_id),
            ("secret_access_key", self._secret_access_key),
            ("allow_http", self.allow_http),
        )
        return BlobStoreConfig("s3", self.url, options)

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``: where the blobs are, fit to print."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, hash: str) -> str:
        return f"{hash[:2]}/{hash[2:]}"

    def _where(self, hash: str) -> str:
        return f"{self.url}/{self._key(hash)}"

    def _scrub(self, exc: BaseException) -> str:
        """obstore's message, first line only, with no credential in it."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:400]

    def _fail(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"cannot {what} ({self!r}): {self._scrub(exc)}")

    # the BlobStore protocol

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
        """Store the blob ``hash`` (see ``BlobStore.put``), streamed.

        Uncompressed, its bytes go up in parts straight from ``parts``; compressed, the
        stored form is written to a temporary file first (its size is known only at the
        end), then uploaded from it: never two copies in memory.
        """
        if not replace:
            have = self.stored_size(hash)
            if have is not None:
                return have, None
        if compress is None:
            compress = size >= _COMPRESS_MIN and compressible(parts)
        if not compress:
            if size + 1 < inline_below:
                return size + 1, BLOB_RAW + b"".join(parts)
            if size < _ONE_PUT:
                joined = BLOB_RAW + b"".join(parts)
                return self.put_encoded(hash, joined, replace=replace), None
            self._upload(hash, _raw_chunks(parts), f"store blob {hash[:16]}…")
            return size + 1, None
        with tempfile.TemporaryFile(prefix="cashet-blob-") as f:
            stored = write_encoded(f, parts, size, True)
            f.seek(0)
            if stored < inline_below:
                return stored, f.read()
            self._upload(hash, f, f"store blob {hash[:16]}…")
        return stored, None

    def _upload(self, hash: str, source: Any, what: str) -> None:
        import obstore

        try:
            obstore.put(self._connect(), self._key(hash), source, chunk_size=_PART)
        except Exception as exc:
            raise self._fail(what, exc) from None

    def put_encoded(self, hash: str, encoded: bytes, *, replace: bool = False) -> int:
        """Store a blob already in its stored form: one PUT, create-if-absent unless
        ``replace``."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        mode: Literal["create", "overwrite"] = "overwrite" if replace else "create"
        try:
            obstore.put(self._connect(), self._key(hash), encoded, mode=mode, use_multipart=False)
        except AlreadyExistsError:
            pass  # the same blob, put by someone else
        except Exception as exc:
            raise self._fail(f"store blob {hash[:16]}…", exc) from None
        return len(encoded)

    def get(self, hash: str) -> bytes:
        """The blob's bytes, verified; a large one as a ``bytearray``, downloaded straight
        into it (a compressed one decompressed on the way).

        Raises:
            BlobMissingError: there is no such object.
            BlobCorruptedError: its bytes do not match the hash (the object is deleted).
            StoreError: the server cannot be reached, or refuses.
        """
        result = self._get(hash)
        try:
            stored = int(result.meta["size"])
            if stored > _READINTO_MIN:
                chunks = iter(result.stream(_READ))
                first = memoryview(next(chunks, b"")).cast("B")
                if first[:1] == BLOB_RAW:  # most large blobs: straight into one buffer
                    fail = self._broken(hash)
                    return download_raw(chunks, first[1:], stored - 1, hash, fail)  # type: ignore[return-value]
                reader = self._reader(hash, itertools.chain([first], chunks))
            else:
                reader = self._reader(hash, result.stream(_READ))
            out = read_encoded(reader, stored, hash)
            data: bytes | bytearray = out if len(out) >= _READINTO_MIN else bytes(out)
            del out
            verify_blob(data, hash)
        except BlobCorruptedError as exc:
            self._discard(hash)
            raise BlobCorruptedError(f"{exc} (object {self._where(hash)})", hash) from exc
        except StoreError:
            raise
        except Exception as exc:
            raise self._fail(f"read blob {hash[:16]}…", exc) from None
        return data  # type: ignore[return-value]  # bytearray when large

    def _broken(self, hash: str) -> Callable[[Exception], StoreError]:
        return lambda exc: self._fail(f"read blob {hash[:16]}… (the download broke)", exc)

    def _reader(self, hash: str, chunks: Any) -> IO[bytes]:
        """A download as a readable file (a failure in it is a ``StoreError``)."""
        return cast(IO[bytes], ChunkReader(chunks, self._broken(hash)))

    def _get(self, hash: str) -> Any:
        import obstore

        try:
            return obstore.get(self._connect(), self._key(hash))
        except FileNotFoundError:
            raise BlobMissingError(
                f"blob {hash} is missing: no object {self._where(hash)}", hash
            ) from None
        except Exception as exc:
            raise self._fail(f"read blob {hash[:16]}…", exc) from None

    def open(self, hash: str, size: int) -> AbstractContextManager[IO[bytes]]:
        """The blob as a file verified as it is read, downloaded as it is read."""
        return self._opened(hash, size)

    @contextmanager
    def _opened(self, hash: str, size: int) -> Iterator[IO[bytes]]:
        result = self._get(hash)
        try:
            with verified_reader(self._reader(hash, result.stream(_READ)), hash, size) as reader:
                yield reader
        except BlobCorruptedError as exc:
            self._discard(hash)
            raise BlobCorruptedError(f"{exc} (object {self._where(hash)})", hash) from exc

    def _discard(self, hash: str) -> None:
        # Drop the corrupt object, so that the next put of these bytes (if-absent) stores
        # them again; should a good copy have been put meanwhile, it is a miss, not a wrong
        # value.
        with suppress(StoreError):
            self.delete(hash)

    def stored_size(self, hash: str) -> int | None:
        """The object's size (one ``HEAD``), or ``None`` when there is none."""
        import obstore

        try:
            return int(obstore.head(self._connect(), self._key(hash))["size"])
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail(f"look up blob {hash[:16]}…", exc) from None

    def exists(self, hash: str) -> bool:
        """Whether the object is there (one ``HEAD``)."""
        return self.stored_size(hash) is not None

    def delete(self, hash: str) -> None:
        """Delete the object (nothing when it is not there)."""
        import obstore

        try:
            obstore.delete(self._connect(), self._key(hash))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._fail(f"delete blob {hash[:16]}…", exc) from None

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """Yield ``(hash, size)`` of every blob object under the prefix (listed in pages)."""
        import obstore

        try:
            for page in obstore.list(self._connect(), chunk_size=1000):
                for meta in page:
                    h = str(meta["path"]).replace("/", "")
                    if len(h) == 64 and set(h) <= _HEX:
                        yield h, int(meta["size"])
        except Exception as exc:
            raise self._fail("list blobs", exc) from None

    def close(self) -> None:
        """Drop the client (connections close with it). Idempotent."""
        self._client = None


def _raw_chunks(parts: BlobParts) -> Iterator[memoryview | bytes]:
    """The raw stored form of ``parts`` in slices (no joined copy)."""
    yield BLOB_RAW
    for part in parts:
        view = memoryview(part).cast("B")
        for i in range(0, view.nbytes, _PART):
            yield view[i : i + _PART]
