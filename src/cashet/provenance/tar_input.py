"""Reading an untrusted archive: the gzip tar stream and the checks every member passes.

Shared by :mod:`cashet.provenance.archive` (this cashet's format) and
:mod:`cashet.provenance.legacy_archive` (the published cashet 0.4.x/0.5.x export).
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from cashet.errors import ArchiveError, CashetError

__all__ = [
    "CLOCK_SKEW",
    "LEGACY_ROOT",
    "MAX_JSON_BYTES",
    "OldFormat",
    "check_safe",
    "reading",
    "stamp",
]

#: The root of the published cashet 0.4.x/0.5.x export (see provenance.legacy_archive).
LEGACY_ROOT = "cashet-export"
#: Largest JSON member read (a commit holds its function's source and an args snapshot).
MAX_JSON_BYTES = 16 << 20
_CHUNK = 1 << 20
#: A commit dated further in the future than this is rejected: it would outrank every
#: real run of its call in cache lookups and escape age-based GC.
CLOCK_SKEW = timedelta(minutes=5)


def stamp(path: Path) -> tuple[int, int, int]:
    """The archive file's size, mtime and inode: a change between two reads is refused."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ArchiveError(f"cannot read archive {path}: {exc.strerror or exc}") from exc
    return st.st_size, st.st_mtime_ns, st.st_ino


@contextmanager
def reading(path: Path) -> Iterator[tarfile.TarFile]:
    """Open ``path`` as a gzip tar stream, turning every read failure into ArchiveError.

    ``gzip.GzipFile`` (not tarfile's own gzip reader) checks the CRC and length at the end,
    and the stream is read to its end: a truncated archive is an error, not a shorter
    archive.
    """
    try:
        with (
            open(path, "rb") as raw,
            gzip.GzipFile(fileobj=raw, mode="rb") as gz,
            tarfile.open(fileobj=gz, mode="r|") as tar,
        ):
            yield tar
            while gz.read(_CHUNK):
                pass
    except CashetError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, TypeError) as exc:
        raise ArchiveError(
            f"cannot read archive {path}: not a valid tar.gz or damaged ({exc})"
        ) from exc


class OldFormat(Exception):
    """The archive is a published cashet 0.4.x/0.5.x export (``cashet-export/`` members)."""


def check_safe(member: tarfile.TarInfo) -> None:
    """Refuse a member whose name or type could write outside the store, before reading it."""
    name = member.name
    shown = repr(name)
    if "\x00" in name or "\\" in name:
        raise ArchiveError(f"unsafe member name {shown}: NUL or backslash")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"unsafe member {shown}: absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise ArchiveError(f"unsafe member {shown}: parent directory reference '..'")
    if member.issym() or member.islnk():
        raise ArchiveError(
            f"unsafe member {shown}: a {'symbolic' if member.issym() else 'hard'} link "
            f"(to {member.linkname!r}); archives hold regular files only"
        )
    if member.ischr() or member.isblk() or member.isfifo():
        raise ArchiveError(f"unsafe member {shown}: a device or FIFO")
