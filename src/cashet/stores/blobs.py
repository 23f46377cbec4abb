"""Blob bytes as stores keep them: content hash, framing, compression, verification.

Pure (no store IO), shared by every store and by export/import:

* ``blob_hash`` / ``blob_hash_parts``: the BLAKE3 hex digest that names a blob.
* ``encode_blob`` / ``decode_blob``: the stored form, a header byte (``BLOB_RAW`` or
  ``BLOB_ZSTD``) then the raw or zstd-compressed bytes.
* ``write_encoded`` / ``read_encoded``: the same stored form written to and read from a
  file chunk by chunk, so a large blob is never held twice in memory.
* ``verify_blob``: raise ``BlobCorruptedError`` instead of returning wrong bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from blake3 import blake3

from cashet import _process
from cashet.errors import BlobCorruptedError
from cashet.hashing._blake import MULTITHREAD_MIN, new_hasher

__all__ = [
    "BLOB_RAW",
    "BLOB_ZSTD",
    "blob_hash",
    "blob_hash_parts",
    "decode_blob",
    "encode_blob",
    "open_decoded",
    "read_encoded",
    "verify_blob",
    "worth_compressing",
    "write_encoded",
]

BLOB_RAW = b"\x00"
BLOB_ZSTD = b"\x01"
#: Compress only blobs at least this large; smaller ones rarely shrink enough to pay.
_COMPRESS_MIN = 512
#: Keep the compressed form only when it saves at least this fraction.
_COMPRESS_GAIN = 0.9


class _ZstdPool:
    """zstd contexts, each lent to one thread at a time.

    A context must not be used by two threads at once ("Operation not authorized at current
    processing stage"), and a multithreaded compressor must be neither used nor freed in a
    forked child: its worker threads stayed in the parent, and freeing it joins them, which
    hangs. So every context made stays referenced here (their number is the peak number of
    threads compressing at once), and a forked child keeps its parent's for good, unused.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._made: list[Any] = []

    @contextmanager
    def lend(self) -> Iterator[Any]:
        with self._lock:
            ctx = self._idle.pop() if self._idle else None
        if ctx is None:
            ctx = self._make()
            with self._lock:
                self._made.append(ctx)
        try:
            yield ctx
        finally:
            with self._lock:
                self._idle.append(ctx)

    def after_fork_in_child(self) -> None:
        _of_parent.extend(self._made)
        self._reset()


def _new_compressor() -> Any:
    import zstandard

    return zstandard.ZstdCompressor(level=3, threads=-1 if _cpu_count() > 1 else 0)


def _new_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor()


_compressors = _ZstdPool(_new_compressor)
_decompressors = _ZstdPool(_new_decompressor)
_of_parent: list[Any] = []


@_process.after_fork_in_child
def _zstd_after_fork() -> None:
    _compressors.after_fork_in_child()
    _decompressors.after_fork_in_child()


def blob_hash(data: bytes | bytearray | memoryview) -> str:
    """Return the BLAKE3 hex digest of ``data`` (multithreaded for large inputs)."""
    n = memoryview(data).nbytes if isinstance(data, memoryview) else len(data)
    if n < MULTITHREAD_MIN:
        return blake3(data).hexdigest()
    h = new_hasher(n)
    h.update(data)
    return h.hexdigest()


def blob_hash_parts(parts: Sequence[bytes | bytearray | memoryview]) -> tuple[str, int]:
    """Return the digest and length of the concatenation of ``parts`` (without joining)."""
    size = sum(memoryview(p).nbytes for p in parts)
    h = new_hasher(size)
    for p in parts:
        h.update(p)
    return h.hexdigest(), size


def verify_blob(data: bytes | bytearray | memoryview, expected: str) -> None:
    """Raise ``BlobCorruptedError`` when ``data`` does not hash to ``expected``."""
    actual = blob_hash(data)
    if actual != expected:
        raise BlobCorruptedError(
            f"blob {expected[:16]}… is corrupt: its bytes hash to {actual[:16]}…", expected
        )


def worth_compressing(data: bytes | memoryview) -> bool:
    """Probe a few slices of a large blob: compress the whole only if the sample shrinks.

    Compressing 100 MiB of incompressible floats costs far more than writing them, so a
    large blob is compressed only when three 64 KiB samples compress well.
    """
    n = len(data)
    if n <= 1 << 20:
        return True
    view = memoryview(data)
    step = 64 << 10
    sample = b"".join(bytes(view[i : i + step]) for i in (0, n // 2, n - step))
    with _compressors.lend() as zc:
        return len(zc.compress(sample)) < len(sample) * _COMPRESS_GAIN


def _cpu_count() -> int:
    return os.cpu_count() or 1


def encode_blob(data: bytes | memoryview) -> bytes:
    """Return the stored form of ``data``: a header byte, then raw or zstd bytes.

    zstd is kept only when it makes the blob at least 10% smaller.
    """
    if len(data) >= _COMPRESS_MIN and worth_compressing(data):
        with _compressors.lend() as zc:
            packed: bytes = zc.compress(data)
        if len(packed) < len(data) * _COMPRESS_GAIN:
            return BLOB_ZSTD + packed
    return BLOB_RAW + (data if isinstance(data, bytes) else bytes(data))


def decode_blob(stored: bytes | memoryview, blob_hash_hint: str = "") -> bytes:
    """Invert :func:`encode_blob`."""
    if not stored:
        raise BlobCorruptedError(f"blob {blob_hash_hint[:16]}… is empty", blob_hash_hint)
    head = bytes(stored[:1])
    body = memoryview(stored)[1:]
    if head == BLOB_RAW:
        return bytes(body)
    if head == BLOB_ZSTD:
        try:
            with _decompressors.lend() as zd:
                out: bytes = zd.decompress(body)
        except Exception as exc:
            raise BlobCorruptedError(
                f"blob {blob_hash_hint[:16]}… cannot be decompressed: {exc}", blob_hash_hint
            ) from exc
        return out
    raise BlobCorruptedError(
        f"blob {blob_hash_hint[:16]}… has an unknown header byte {head!r}", blob_hash_hint
    )


#: Large blobs are compressed (and decompressed) in slices of this size.
_SLICE = 8 << 20


def _slices(parts: Sequence[bytes | bytearray | memoryview]) -> Iterator[memoryview]:
    for part in parts:
        view = memoryview(part).cast("B")
        for i in range(0, view.nbytes, _SLICE):
            yield view[i : i + _SLICE]


def write_encoded(
    f: IO[bytes], parts: Sequence[bytes | bytearray | memoryview], size: int, compress: bool
) -> int:
    """Write the stored form of the concatenation of ``parts`` (``size`` bytes) to the
    empty, seekable file ``f``, chunk by chunk; return how many bytes it is.

    The same bytes as ``encode_blob(b"".join(parts))`` would give when ``compress`` is
    true (the zstd frame records its content size), without joining or holding the
    compressed form: it goes to ``f`` as it is made. When it does not save 10% after all,
    ``f`` is rewritten with the raw form.
    """
    if compress and size >= _COMPRESS_MIN:
        import zstandard

        f.write(BLOB_ZSTD)
        worth = True
        with _compressors.lend() as zc:
            writer = zc.stream_writer(f, size=size, closefd=False)
            fed = 0
            for piece in _slices(parts):
                writer.write(piece)
                fed += piece.nbytes
                if fed >= 4 * _SLICE and f.tell() - 1 >= fed * _COMPRESS_GAIN:
                    worth = False  # already too big: stop compressing the rest
                    break
            # Ends the frame even when stopping early, so the context is clean for reuse
            # (short of its pledged size, zstd may refuse the frame: it is dropped anyway).
            try:
                writer.flush(zstandard.FLUSH_FRAME)
                writer.close()
            except zstandard.ZstdError:
                if worth:
                    raise
        stored = f.tell()
        if worth and stored - 1 < size * _COMPRESS_GAIN:
            return stored
        f.seek(0)
        f.truncate()
    f.write(BLOB_RAW)
    for part in parts:
        f.write(part)
    return size + 1


def read_encoded(f: IO[bytes], stored_size: int, blob_hash_hint: str = "") -> bytearray:
    """Read and decode the stored form of a blob from ``f`` (at its start), ``stored_size``
    bytes long, into one ``bytearray``: a compressed blob is decompressed straight into it,
    never held compressed and decompressed at once. Not verified (see :func:`verify_blob`).

    Raises:
        BlobCorruptedError: the header or the zstd frame is damaged.
        OSError: the file cannot be read.
    """
    hint = blob_hash_hint[:16]
    head = f.read(1)
    if head == BLOB_RAW:
        return _read_exactly(f, max(stored_size - 1, 0))
    if head != BLOB_ZSTD:
        raise BlobCorruptedError(
            f"blob {hint}… has an unknown header byte {head!r}", blob_hash_hint
        )
    import zstandard

    try:
        size = zstandard.get_frame_parameters(f.read(18)).content_size
        f.seek(1)
        if size == zstandard.CONTENTSIZE_UNKNOWN or size == zstandard.CONTENTSIZE_ERROR:
            with _decompressors.lend() as zd:
                return bytearray(zd.decompress(f.read()))
        out = bytearray(size)
        view = memoryview(out)
        got = 0
        with _decompressors.lend() as zd:
            reader = zd.stream_reader(f, read_size=1 << 20, closefd=False)
            while got < size:
                n = reader.readinto(view[got : got + _SLICE])
                if not n:
                    break
                got += n
            extra = reader.read(1) if got == size else b""
            reader.close()
        del view
    except (zstandard.ZstdError, MemoryError, OverflowError, ValueError) as exc:
        raise BlobCorruptedError(
            f"blob {hint}… cannot be decompressed: {exc}", blob_hash_hint
        ) from exc
    if got != size or extra:
        raise BlobCorruptedError(
            f"blob {hint}… does not decompress to the {size} bytes its frame says",
            blob_hash_hint,
        )
    return out


def _read_exactly(f: IO[bytes], want: int) -> bytearray:
    """Read ``want`` bytes of ``f`` into one bytearray (one copy from the kernel)."""
    buf = bytearray(want)
    view = memoryview(buf)
    got = 0
    while got < want:
        n = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    del view
    if got < want:
        del buf[got:]
    return buf


@contextmanager
def open_decoded(f: IO[bytes], blob_hash_hint: str = "") -> Iterator[IO[bytes]]:
    """A readable stream of the decoded bytes of the stored form in ``f`` (at its start):
    ``f`` itself past the header byte, or a zstd stream over it. Not verified.

    Raises:
        BlobCorruptedError: the header byte is unknown.
    """
    head = f.read(1)
    if head == BLOB_RAW:
        yield f
        return
    if head != BLOB_ZSTD:
        raise BlobCorruptedError(
            f"blob {blob_hash_hint[:16]}… has an unknown header byte {head!r}", blob_hash_hint
        )
    with _decompressors.lend() as zd:
        reader = zd.stream_reader(f, read_size=_SLICE, closefd=False)
        try:
            yield reader
        finally:
            reader.close()
