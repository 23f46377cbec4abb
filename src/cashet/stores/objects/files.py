"""``FileBlobStore``: blobs as files ``objects/ab/cdef…``, written atomically, read verified.

The SQLite store's default blob store (its ``objects/`` directory), and the local cache in
front of a remote one (``Client(local_cache=...)``). A file holds a blob's stored form
(:mod:`cashet.stores.blobs`: a header byte, then raw or zstd bytes). Writes go to a temporary
name and are renamed into place, so a reader sees no file or the whole file. Reads verify the
bytes against the hash; a corrupt file is removed so that storing the same bytes again
repairs it. Which blobs exist is indexed by the metadata store.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import IO

from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.protocols import BlobParts
from cashet.stores.blobs import (
    BLOB_RAW,
    BLOB_ZSTD,
    decode_blob,
    read_encoded,
    verify_blob,
    write_encoded,
)
from cashet.stores.objects.base import BlobStoreConfig, compressible
from cashet.stores.objects.streams import verified_reader

__all__ = ["READINTO_MIN", "FileBlobStore", "has_file", "unlink"]

_HEX = frozenset("0123456789abcdef")

#: Raw blob files at least this large are read into a bytearray (see FileBlobStore.read).
READINTO_MIN = 1 << 20


def has_file(path: str, size: int) -> bool:
    """Whether ``path`` exists with ``size`` bytes: the cheap check before a rewrite."""
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


def unlink(path: str) -> None:
    """Remove ``path`` if it exists."""
    with suppress(FileNotFoundError):
        os.unlink(path)


class FileBlobStore:
    """Blobs as files under one directory: ``<root>/ab/cdef…`` (a ``BlobStore``).

    Args:
        root: the directory (created if missing, with its parents).
        store_dir: what errors name when the directory cannot be made (the SQLite store
            directory; default: ``root``).
        create: create the directory (``False``: a read-only store, which creates nothing).

    Raises:
        StoreError: the directory cannot be created.
    """

    def __init__(
        self, root: str | os.PathLike[str], store_dir: object = None, *, create: bool = True
    ) -> None:
        self.root = os.fspath(root)
        self._create = create
        if not create:
            return
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            where = self.root if store_dir is None else store_dir
            raise StoreError(f"cannot create the store directory {where}: {exc}") from exc

    def __repr__(self) -> str:
        return f"FileBlobStore({self.root!r})"

    @property
    def config(self) -> BlobStoreConfig:
        """What reopens this blob store elsewhere (its absolute directory)."""
        return BlobStoreConfig("file", os.path.abspath(self.root), (("create", self._create),))

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
        """Store the blob ``hash`` (see ``BlobStore.put``), streamed into its file."""
        path = self.path(hash)
        if not replace:
            have = self.stored_size(hash)
            if have is not None:
                return have, None
        if compress is None:
            compress = compressible(parts)
        return self.write_parts(path, parts, size, compress, inline_below)

    def put_encoded(self, hash: str, encoded: bytes, *, replace: bool = False) -> int:
        """Store a blob already in its stored form (see ``BlobStore.put_encoded``)."""
        path = self.path(hash)
        if replace or not has_file(path, len(encoded)):
            self.write(path, encoded)
        return len(encoded)

    def get(self, hash: str) -> bytes:
        """The blob's bytes, verified (see :meth:`read`)."""
        return self.read(hash)

    def open(self, hash: str, size: int) -> AbstractContextManager[IO[bytes]]:
        """The blob as a file verified as it is read (see :meth:`open_verified`)."""
        return self.open_verified(hash, size)

    def stored_size(self, hash: str) -> int | None:
        """The size of the blob's file, or ``None`` when there is none."""
        try:
            return os.stat(self.path(hash)).st_size
        except OSError:
            return None

    def exists(self, hash: str) -> bool:
        """Whether the blob's file is there."""
        return os.path.exists(self.path(hash))

    def delete(self, hash: str) -> None:
        """Remove the blob's file, if any."""
        unlink(self.path(hash))

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        """Yield ``(hash, size)`` of every blob file (not temporary or foreign files)."""
        try:
            shards = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return
        for shard in shards:
            if len(shard.name) != 2 or not shard.is_dir(follow_symlinks=False):
                continue
            try:
                entries = list(os.scandir(shard.path))
            except OSError:
                continue
            for entry in entries:
                h = shard.name + entry.name
                if len(h) == 64 and set(h) <= _HEX:
                    with suppress(OSError):
                        yield h, entry.stat(follow_symlinks=False).st_size

    def close(self) -> None:
        """Nothing to release."""

    # files

    def path(self, hash: str) -> str:
        """Where the blob ``hash`` is kept."""
        return os.path.join(self.root, hash[:2], hash[2:])

    def write(self, path: str, encoded: bytes | Sequence[bytes | memoryview]) -> None:
        """Write ``encoded`` (one buffer, or chunks written in turn) to ``path`` atomically.

        Raises:
            StoreError: the file cannot be written.
        """
        # No fsync: every read verifies the hash, so a file torn by a power cut is reported
        # as corrupt, removed, and rewritten when its task runs again; an fsync per blob
        # would cost milliseconds for that rare case.
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".tmp-{name[:8]}-{secrets.token_hex(6)}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "xb") as f:
                if isinstance(encoded, bytes):
                    f.write(encoded)
                else:
                    for chunk in encoded:
                        f.write(chunk)
            os.replace(tmp, path)
        except BaseException as exc:
            with suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write blob file {path}: {exc}") from exc
            raise

    def write_parts(
        self,
        path: str,
        parts: Sequence[bytes | bytearray | memoryview],
        size: int,
        compress: bool,
        inline_below: int = 0,
    ) -> tuple[int, bytes | None]:
        """Write the stored form of the concatenation of ``parts`` to ``path`` atomically,
        chunk by chunk (compressed on the way when ``compress``); return its size.

        When the stored form is shorter than ``inline_below`` (a large blob that compresses
        to almost nothing), no file is left: its bytes are returned to be kept inline.

        Raises:
            StoreError: the file cannot be written.
        """
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".tmp-{name[:8]}-{secrets.token_hex(6)}")
        try:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "xb+") as f:
                stored = write_encoded(f, parts, size, compress)
                if stored < inline_below:
                    f.seek(0)
                    inline = f.read()
                    f.close()
                    os.unlink(tmp)
                    return stored, inline
            os.replace(tmp, path)
        except BaseException as exc:
            with suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write blob file {path}: {exc}") from exc
            raise
        return stored, None

    @contextmanager
    def open_verified(self, h: str, size: int) -> Iterator[IO[bytes]]:
        """The blob ``h`` (``size`` bytes) as a readable file, hashed as it is read.

        Leaving the block reads what is left and checks the hash: a mismatch removes the
        file and raises ``BlobCorruptedError`` (also in place of an error raised inside
        the block by reading damaged bytes, which stays its ``__cause__``).

        Raises:
            BlobMissingError: there is no file.
            BlobCorruptedError: the bytes do not match the hash.
            StoreError: the file cannot be read.
        """
        path = self.path(h)
        f = _open_blob_file(path, h)
        with f:
            st = os.fstat(f.fileno())
            try:
                with verified_reader(f, h, size) as reader:
                    yield reader
            except BlobCorruptedError as exc:
                _discard(path, st)
                raise BlobCorruptedError(f"{exc} (file {path})", h) from exc
            except OSError as exc:
                raise StoreError(f"cannot read blob file {path}: {exc}") from exc

    def read(self, h: str) -> bytes:
        """Return the blob ``h`` from its file, verified.

        A large raw blob comes back as a ``bytearray`` (one copy from the kernel; NumPy
        arrays loaded from it are writable).

        Raises:
            BlobMissingError: there is no file.
            BlobCorruptedError: the bytes do not match the hash (the file is removed).
            StoreError: the file cannot be read.
        """
        path = self.path(h)
        f = _open_blob_file(path, h)
        try:
            with f:
                st = os.fstat(f.fileno())
                head = f.read(1)
                want = max(st.st_size - 1, 0)
                if head == BLOB_ZSTD:
                    # Decompressed straight into one buffer (the compressed form is never
                    # held whole beside it); small ones come back as bytes.
                    f.seek(0)
                    out = read_encoded(f, st.st_size, h)
                    data: bytes | bytearray = out if len(out) >= READINTO_MIN else bytes(out)
                    del out
                    verify_blob(data, h)
                    return data  # type: ignore[return-value]  # bytearray when large
                if head == BLOB_RAW and want >= READINTO_MIN:
                    # A large raw blob (typically NumPy buffers) is read into a bytearray:
                    # one copy from the kernel, and arrays loaded from it are writable
                    # views instead of read-only ones.
                    buf = bytearray(want)
                    view = memoryview(buf)
                    got = 0
                    while got < want:
                        n = f.readinto(view[got:])
                        if not n:
                            break
                        got += n
                    del view
                    if got < want:
                        del buf[got:]
                    body: bytes | bytearray = buf
                else:
                    # FileIO.read(n) reads straight into one new bytes object of n bytes.
                    body = f.read(want)
                    if len(body) < want:  # one read(2) stops at 2 GiB on Linux
                        body += f.readall()
            data = body if head == BLOB_RAW else decode_blob(head + body, h)
            verify_blob(data, h)
            return data  # type: ignore[return-value]  # bytearray for large raw blobs
        except BlobCorruptedError as exc:
            if head in (BLOB_RAW, BLOB_ZSTD):  # never discard a format we cannot read
                _discard(path, st)
            raise BlobCorruptedError(f"{exc} (file {path})", h) from exc
        except OSError as exc:
            raise StoreError(f"cannot read blob file {path}: {exc}") from exc


def _discard(path: str, read: os.stat_result) -> None:
    # Remove the corrupt file (unless someone has already replaced it), so that the next
    # put_blob of these bytes sees it missing and rewrites it.
    with suppress(OSError):
        now = os.stat(path)
        if (now.st_ino, now.st_dev) == (read.st_ino, read.st_dev):
            os.unlink(path)


def _open_blob_file(path: str, h: str) -> io.FileIO:
    """Open blob ``h``'s file unbuffered for reading (the caller closes it).

    Raises:
        BlobMissingError: there is no file.
        StoreError: the file cannot be opened.
    """
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError as exc:
        raise BlobMissingError(f"blob {h} is missing: no file {path}", h) from exc
    except OSError as exc:
        raise StoreError(f"cannot read blob file {path}: {exc}") from exc
