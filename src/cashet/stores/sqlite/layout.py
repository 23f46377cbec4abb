"""What an SQLite store directory holds on disk, for code that must not open one.

The store itself (:mod:`cashet.stores.sqlite.store`) creates this layout; the functions here
only look at it: whether a directory holds a store (so a read-only command never creates
one), and how big its database is.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from cashet.errors import StoreError

__all__ = ["DB_FILE", "WAL_FILE", "check_store_dir", "database_info"]

#: The database of commits, tags, the blob index, small blobs and leases.
DB_FILE = "meta.db"
#: Its write-ahead log (WAL mode).
WAL_FILE = DB_FILE + "-wal"


def check_store_dir(path: Path, *, lost_db: bool = False) -> None:
    """Raise unless ``path`` is a directory holding a store's database.

    Args:
        path: the store directory.
        lost_db: accept a store whose database is gone while its ``objects/`` remain (for
            the doctor, which reclaims them).

    Raises:
        StoreError: ``path`` does not exist, or is not a store directory.
    """
    if not path.exists():
        raise StoreError(f"no cashet store at {path}")
    if path.is_dir() and (path / "objects").is_dir() and not (path / DB_FILE).is_file():
        if lost_db:
            return
        raise StoreError(
            f"the cashet store {path} has lost its {DB_FILE} but its objects/ remain:"
            " `cashet doctor --repair` reclaims them"
        )
    if not path.is_dir() or not (path / DB_FILE).is_file():
        raise StoreError(f"{path} is not a cashet store (it has no {DB_FILE})")


def database_info(path: Path) -> tuple[str, int] | None:
    """Return the database file's name and its size with the WAL, or ``None`` if absent."""
    if not (path / DB_FILE).is_file():
        return None
    total = 0
    for name in (DB_FILE, WAL_FILE):
        with suppress(OSError):
            total += (path / name).stat().st_size
    return DB_FILE, total
