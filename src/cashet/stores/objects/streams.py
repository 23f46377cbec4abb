"""Readable streams shared by the blob stores: a stream of downloaded chunks as a file, and
a blob's decoded bytes hashed as they are read (verified at the end of the block).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from cashet.errors import BlobCorruptedError, StoreError
from cashet.hashing._blake import new_hasher
from cashet.stores.blobs import open_decoded

__all__ = ["ChunkReader", "HashingReader", "verified_reader"]


class ChunkReader(io.RawIOBase):
    """The concatenation of an iterator of buffers (a download) as a readable file.

    ``seek`` goes back only within the chunk being read (``read_encoded`` peeks at the zstd
    frame header, then seeks back to byte 1); the chunks are never joined.
    """

    def __init__(self, chunks: Iterable[Any], fail: Callable[[Exception], StoreError]) -> None:
        self._chunks = iter(chunks)
        self._fail = fail  # a download that breaks is a StoreError, never a corrupt blob
        self._buf = memoryview(b"")
        self._off = 0
        self._start = 0  # where the current chunk starts in the stream

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._start + self._off

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.tell()
        if whence == 2 or not self._start <= pos <= self._start + len(self._buf):
            raise io.UnsupportedOperation("a download seeks back only within its chunk")
        self._off = pos - self._start
        return pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        while self._off >= len(self._buf):
            try:
                chunk = next(self._chunks, None)
            except Exception as exc:
                raise self._fail(exc) from None
            if chunk is None:
                return 0
            self._start += len(self._buf)
            self._buf = memoryview(chunk).cast("B")
            self._off = 0
        n = min(len(out), len(self._buf) - self._off)
        out[:n] = self._buf[self._off : self._off + n]
        self._off += n
        return n


class HashingReader(io.RawIOBase):
    """A readable stream that hashes what it passes on (see :func:`verified_reader`)."""

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
        except StoreError:
            raise  # the source failed (a download broke): not a verdict on the bytes
        except Exception:  # a damaged zstd frame
            return False
        return bool(self._hasher.hexdigest() == h)


@contextmanager
def verified_reader(f: IO[bytes], h: str, size: int) -> Iterator[IO[bytes]]:
    """The decoded bytes of the stored form in ``f`` (at its start), ``size`` bytes, hashed
    as they are read. Leaving the block reads what is left and checks the hash.

    Raises:
        BlobCorruptedError: the bytes do not match ``h`` (also in place of an error raised
            inside the block by reading damaged bytes, which stays its ``__cause__``).
    """
    with open_decoded(f, h) as decoded:
        reader = HashingReader(decoded, size)
        try:
            yield io.BufferedReader(reader, 1 << 16)
        except StoreError:
            raise  # the source failed (a download broke): not a verdict on the bytes
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


def download_raw(
    chunks: Iterator[Any],
    first: memoryview,
    size: int,
    h: str,
    fail: Callable[[Exception], StoreError],
) -> bytearray:
    """The ``size`` bytes of a raw blob downloaded as ``chunks`` (``first`` already taken,
    past its header byte) in one ``bytearray``, verified against ``h``.

    The buffer grows chunk by chunk (a large one is moved by ``mremap``, never copied), each
    chunk hashed while it is in the CPU's cache: no zero-filled buffer is made first and no
    second pass reads it again (bench/suites/s3.py measures it against a bare GET).

    Raises:
        BlobCorruptedError: the bytes do not match ``h``, or there are more or fewer.
        StoreError: the download broke (``fail`` makes it).
    """
    out = bytearray()
    hasher = new_hasher(size)
    chunk: Any = first
    while chunk is not None:
        out += chunk
        hasher.update(chunk)
        if len(out) > size:
            raise BlobCorruptedError(f"blob {h[:16]}… is longer than its {size} bytes", h)
        try:
            chunk = next(chunks, None)
        except Exception as exc:
            raise fail(exc) from None
    if len(out) != size or hasher.hexdigest() != h:
        raise BlobCorruptedError(f"blob {h[:16]}… is corrupt: its bytes do not match its hash", h)
    return out
