"""Copy commits and their result blobs from one store to another: ``push`` and ``pull``.

Works over the store contract only, so any two stores (SQLite, Redis, PostgreSQL, a
third-party one) can be synchronised:

* **incremental**: the commits the target already has are asked for in batches (one query
  per thousand where the target can answer so: :class:`CommitPresence`), and only the
  missing ones are copied, with only the blobs the target lacks;
* **verified**: every commit is read verified from the source (the store contract), every
  blob is read verified and stored again under the hash its bytes have, which must be the
  one the commit names, and the target re-hashes each commit it is given;
* **resumable**: a blob is written before the commit that references it, each write is
  idempotent, so an interrupted copy leaves nothing half done and the next run picks up
  where it stopped;
* with a **progress** bar on a terminal (:mod:`cashet._progress`).

A commit whose result blob is missing or corrupt in the source is not copied (it is listed
in ``skipped``): the target would only have a commit that can never be a hit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from cashet._progress import progress
from cashet.errors import BlobError, StoreError
from cashet.models import Commit
from cashet.protocols import Store, supports
from cashet.stores.base import full_store

__all__ = ["CommitPresence", "SyncResult", "copy_commits"]

#: Commits handled per batch (one presence query each).
BATCH = 1000


@runtime_checkable
class CommitPresence(Protocol):
    """A store capability: which of these commits it records, in one round trip."""

    def have_commits(self, hashes: Sequence[str]) -> set[str]: ...


class SyncResult(int):
    """The number of commits copied, with details.

    Attributes:
        copied: commits written to the target.
        present: commits the target had already.
        blobs: result blobs written to the target (the others it had).
        bytes: their total size.
        skipped: hashes of commits not copied: their result blob was missing or corrupt
            in the source.
    """

    copied: int
    present: int
    blobs: int
    bytes: int
    skipped: tuple[str, ...]

    def __new__(
        cls,
        copied: int,
        present: int = 0,
        blobs: int = 0,
        bytes: int = 0,
        skipped: tuple[str, ...] = (),
    ) -> SyncResult:
        self = super().__new__(cls, copied)
        self.copied, self.present, self.blobs, self.bytes = copied, present, blobs, bytes
        self.skipped = skipped
        return self

    def __str__(self) -> str:
        return int.__repr__(self)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able data (``cashet push --json``)."""
        return {
            "copied": self.copied,
            "present": self.present,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "skipped": list(self.skipped),
        }


def _have(store: Any, hashes: list[str]) -> set[str]:
    if supports(store, CommitPresence):
        found: set[str] = store.have_commits(hashes)
        return found
    return {h for h in hashes if store.get_commit(h) is not None}


def _batches(commits: Iterator[Commit]) -> Iterator[list[Commit]]:
    batch: list[Commit] = []
    for commit in commits:
        batch.append(commit)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_commits(source: Store, target: Store, label: str = "copying") -> SyncResult:
    """Copy every commit of ``source`` that ``target`` lacks, with its result blob.

    Args:
        source: the store read (oldest commit first).
        target: the store written (blobs first, then the commits that reference them).
        label: what the progress bar says.

    Returns:
        What was copied (:class:`SyncResult`; an ``int``: the commits copied).

    Raises:
        StoreError: a store failed; what was copied before stays (run again to resume).
    """
    src, dst = full_store(source), full_store(target)
    copied = present = blobs = size = 0
    skipped: list[str] = []
    known: set[str] = set()  # blobs the target has (seen or written in this run)
    total = int(src.stats().get("total_commits", 0))
    with progress(total, label, min_total=1) as advance:
        for batch in _batches(src.iter_commits()):
            have = _have(dst, [c.hash for c in batch])
            for commit in batch:
                if commit.hash in have:
                    present += 1
                elif _copy_blob(src, dst, commit, known, skipped):
                    if commit.result is not None and commit.result.hash not in known:
                        known.add(commit.result.hash)
                        blobs += 1
                        size += commit.result.size
                    dst.put_commit(commit)
                    copied += 1
                advance()
            advance(f"{copied} copied, {present} there already")
    return SyncResult(copied, present, blobs, size, tuple(skipped))


def _copy_blob(src: Any, dst: Any, commit: Commit, known: set[str], skipped: list[str]) -> bool:
    """Make sure ``dst`` has ``commit``'s result blob, copied verified from ``src``
    (``known``: blobs it has already; a copied one is added by the caller). ``False``
    when the source cannot give it (the commit is skipped)."""
    result = commit.result
    if result is None or result.hash in known:
        return True
    if dst.has_blob(result.hash):
        known.add(result.hash)  # there already: not counted as copied
        return True
    try:
        data = src.get_blob(result)  # verified against its hash
    except BlobError:
        skipped.append(commit.hash)
        return False
    if dst.put_blob(data).hash != result.hash:  # pragma: no cover - get_blob verified it
        raise StoreError(f"blob {result.hash[:16]}... changed while it was copied")
    return True
