"""A SQLite store opened read-only: hits are served, misses computed but never stored.

A store is read-only when asked (``SQLiteStore(path, readonly=True)``, ``Client(...,
readonly=True)``) or, automatically, when its directory or ``meta.db`` cannot be written (a
cache restored on a read-only mount, a shared directory a user may read but not write);
then a :class:`~cashet.errors.ReadOnlyStoreWarning` says so once, at open.

Read-only, ``meta.db`` is opened with a ``mode=ro`` URI (and ``immutable=1`` where no
``-shm`` can exist: see :func:`~cashet.stores.sqlite.connection.readonly_uri`), nothing is
created, and:

* lookups, loads, ``log``, ``show``, ``get``, ``stats``, ``export`` work as ever; access
  times are not recorded (``touch`` does nothing);
* a miss runs its task and returns the result, which is not stored: ``put_result`` hands
  the bytes back on the commit (``Commit.result_data``) for the ``ResultRef`` to load, and
  ``put_blob``/``put_commit`` write nothing;
* leases are kept in this process (a call runs once per process); no lease row is taken;
* ``rm``, ``gc``, ``invalidate``, ``import`` and a repair raise
  :class:`~cashet.errors.ReadOnlyStoreError`;
* a blob found missing or corrupt is remembered in this process (its commit is then a
  miss), since its row cannot be dropped.

This mixin holds the lease and removal overrides; the write methods of
:class:`~cashet.stores.sqlite.store.SQLiteStore` check ``readonly`` themselves.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cashet._log import log
from cashet.errors import ReadOnlyStoreError
from cashet.models import Lease
from cashet.protocols import TagQuery
from cashet.stores.base import LocalLeases

__all__ = ["ReadOnlyMixin", "unwritable"]


def unwritable(path: Path, db_file: str) -> str:
    """Why the store at ``path`` cannot be written (``""`` when it can)."""
    if not path.is_dir():
        return ""  # created (or refused) by the writable path
    if not os.access(path, os.W_OK):
        return f"its directory {path} is not writable"
    if os.path.exists(db_file) and not os.access(db_file, os.W_OK):
        return f"its database {db_file} is not writable"
    objects = path / "objects"
    if objects.is_dir() and not os.access(objects, os.W_OK):
        return f"its objects directory {objects} is not writable"
    return ""


class ReadOnlyMixin:
    """Leases and removals of a read-only ``SQLiteStore`` (writable: the next mixin's)."""

    readonly: bool
    _local_leases: LocalLeases
    _lost: set[str]
    _told_unstored: bool

    def _refuse(self, what: str) -> ReadOnlyStoreError:
        return ReadOnlyStoreError(f"{self!r} is read-only: cannot {what}")

    def _unstored(self, func_name: str) -> None:
        """Say once that a computed result was not stored."""
        if not self._told_unstored:
            self._told_unstored = True
            log.info(
                "%r is read-only: the result of %s was computed and not stored (misses"
                " recompute; said once)",
                self,
                func_name,
            )

    def try_claim(self, fingerprint: str, lease: Lease) -> bool:
        """As ``SQLiteStore.try_claim``; read-only: a lease held in this process."""
        if self.readonly:
            return self._local_leases.try_claim(fingerprint, lease)
        return super().try_claim(fingerprint, lease)  # type: ignore[misc, no-any-return]

    def get_claim(self, fingerprint: str) -> Lease | None:
        """As ``SQLiteStore.get_claim``; read-only: this process's leases."""
        if self.readonly:
            return self._local_leases.get(fingerprint)
        return super().get_claim(fingerprint)  # type: ignore[misc, no-any-return]

    def renew_claim(self, fingerprint: str, owner: str, expires_at: datetime) -> bool:
        """As ``SQLiteStore.renew_claim``; read-only: this process's leases."""
        if self.readonly:
            return self._local_leases.renew(fingerprint, owner, expires_at)
        return super().renew_claim(fingerprint, owner, expires_at)  # type: ignore[misc, no-any-return]

    def release_claim(self, fingerprint: str, owner: str) -> None:
        """As ``SQLiteStore.release_claim``; read-only: this process's leases."""
        if self.readonly:
            self._local_leases.release(fingerprint, owner)
            return
        super().release_claim(fingerprint, owner)  # type: ignore[misc]

    def wait_for_release(self, fingerprint: str, timeout: float) -> None:
        """As ``SQLiteStore.wait_for_release``; read-only: this process's leases."""
        if self.readonly:
            self._local_leases.wait(fingerprint, timeout)
            return
        super().wait_for_release(fingerprint, timeout)  # type: ignore[misc]

    def touch(self, hash: str, when: datetime) -> None:
        """As ``SQLiteStore.touch``; read-only: nothing (access times are not recorded)."""
        if not self.readonly:
            super().touch(hash, when)  # type: ignore[misc]

    def delete_commit(self, hash: str) -> bool:
        """As ``SQLiteStore.delete_commit``.

        Raises:
            ReadOnlyStoreError: the store is read-only.
        """
        if self.readonly:
            raise self._refuse(f"delete commit {hash[:12]}")
        return super().delete_commit(hash)  # type: ignore[misc, no-any-return]

    def delete_by_tags(self, tags: TagQuery) -> int:
        """As ``SQLiteStore.delete_by_tags``.

        Raises:
            ReadOnlyStoreError: the store is read-only.
        """
        if self.readonly:
            raise self._refuse("delete commits by tags")
        return super().delete_by_tags(tags)  # type: ignore[misc, no-any-return]

    def evict(self, older_than: datetime, max_size_bytes: int | None = None) -> int:
        """As ``SQLiteStore.evict``.

        Raises:
            ReadOnlyStoreError: the store is read-only.
        """
        if self.readonly:
            raise self._refuse("collect garbage")
        return super().evict(older_than, max_size_bytes)  # type: ignore[misc, no-any-return]

    def _remember_lost(self, h: str) -> Any:
        """Read-only: a blob found lost is a miss from now on, in this process."""
        self._lost.add(h)
