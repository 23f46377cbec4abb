"""The blob files of a SQLite store: ``objects/ab/cdef…``, written atomically, read verified.

A file holds a blob's stored form (:mod:`cashet.stores.blobs`: a header byte, then raw or
zstd bytes). Writes go to a temporary name and are renamed into place, so a reader sees no
file or the whole file. Reads verify the bytes against the hash; a corrupt file is removed
so that storing the same bytes again repairs it. The index rows live in ``meta.db``.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import IO, Any

from cashet.errors import BlobCorruptedError, BlobMissingError, StoreError
from cashet.hashing._blake import new_hasher
from cashet.stores.blobs import (
    BLOB_RAW,
    BLOB_ZSTD,
    decode_blob,
    open_decoded,
    read_encoded,
    verify_blob,
    write_encoded,
)

__all__ = ["READINTO_MIN", "BlobFiles", "has_file", "unlink"]

#: Raw blob files at least this large are read into a bytearray (see BlobFiles.read).
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


class BlobFiles:
    """The ``objects/`` directory of one store.

    Args:
        objects: the directory (created if missing, with its parents).
        store_dir: the store directory, as errors name it.
        create: create the directory (``False``: a read-only store, which creates nothing).

    Raises:
        StoreError: the directory cannot be created.
    """

    def __init__(self, objects: str, store_dir: object, *, create: bool = True) -> None:
        self.root = objects
        if not create:
            return
        try:
            os.makedirs(objects, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store directory {store_dir}: {exc}") from exc

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
                with open_decoded(f, h) as decoded:
                    reader = _Hashing(decoded, size)
                    try:
                        yield io.BufferedReader(reader, 1 << 16)
                    except Exception as exc:
                        if reader.intact(h):
                            raise
                        raise BlobCorruptedError(
                            f"blob {h[:16]}… is corrupt: its bytes do not match its hash", h
                        ) from exc
                    if not reader.intact(h):
                        raise BlobCorruptedError(
                            f"blob {h[:16]}… is corrupt: its bytes do not match its hash", h
                        )
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


class _Hashing(io.RawIOBase):
    """A readable stream that hashes what it passes on (see ``BlobFiles.open_verified``)."""

    def __init__(self, source: Any, size: int) -> None:
        self._source = source
        self._hasher = new_hasher(size)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n: int = self._source.readinto(buffer) or 0
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        return n

    def intact(self, h: str) -> bool:
        """Read what is left; whether everything read hashes to ``h``."""
        try:
            scratch = bytearray(1 << 20)
            while self.readinto(scratch):
                pass
        except Exception:  # a damaged zstd frame
            return False
        return bool(self._hasher.hexdigest() == h)


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
