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
in ``skipped``): the target would only have a commit that can never be a hit. Into a store
with a signing key, only the commits signed with that key are copied (the others are
skipped: the target never signs a commit it did not make).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from cashet._progress import progress
from cashet.errors import BlobError
from cashet.models import Commit
from cashet.protocols import Store, supports
from cashet.stores.base import full_store

__all__ = ["BatchWriter", "CommitPresence", "SyncResult", "copy_commits"]

#: Commits handled per batch (one presence query each, one write transaction).
BATCH = 1000
#: A batch is written early once its blobs add up to this many bytes.
BATCH_BYTES = 64 << 20


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
            in the source, or the target signs and they are not signed with its key.
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


@runtime_checkable
class BatchWriter(Protocol):
    """A store capability: blobs and commits written a batch at a time (one transaction),
    and which blobs it has, in one round trip."""

    def have_blobs(self, hashes: Sequence[str]) -> set[str]: ...
    def put_many(self, blobs: Sequence[bytes], commits: Sequence[Commit]) -> None: ...


def _have(store: Any, hashes: list[str]) -> set[str]:
    if supports(store, CommitPresence):
        found: set[str] = store.have_commits(hashes)
        return found
    return {h for h in hashes if store.get_commit(h) is not None}


def _have_blobs(store: Any, hashes: list[str]) -> set[str]:
    if supports(store, BatchWriter):
        found: set[str] = store.have_blobs(hashes)
        return found
    return {h for h in hashes if store.has_blob(h)}


def _batches(commits: Iterator[Commit]) -> Iterator[list[Commit]]:
    batch: list[Commit] = []
    for commit in commits:
        batch.append(commit)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class _Writer:
    """What is waiting to be written to the target: blobs first, then their commits."""

    def __init__(self, target: Any, batched: bool) -> None:
        self.target = target
        self.batched = batched
        self.blobs: list[bytes] = []
        self.commits: list[Commit] = []
        self.size = 0

    def add(self, commit: Commit, blob: bytes | None) -> None:
        if blob is not None:
            self.blobs.append(blob)
            self.size += len(blob)
        self.commits.append(commit)
        if self.size >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.batched:
            self.target.put_many(self.blobs, self.commits)
        else:
            for blob in self.blobs:
                self.target.put_blob(blob)
            for commit in self.commits:
                self.target.put_commit(commit)
        self.blobs, self.commits, self.size = [], [], 0


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
    src = full_store(source)
    # A signing target (a client with a team key) writes commit by commit through its own
    # checks, and takes only commits signed with its key: it never signs what it did not
    # make (an unsigned or foreign commit is skipped).
    key = getattr(target, "signing_key", None)
    batched = key is None and supports(target, BatchWriter)
    dst: Any = target if batched else full_store(target)
    copied = present = blobs = size = 0
    skipped: list[str] = []
    known: set[str] = set()  # blobs the target has (found there, or written in this run)
    writer = _Writer(dst, batched)
    total = int(src.stats().get("total_commits", 0))
    with progress(total, label, min_total=1) as advance:
        for batch in _batches(src.iter_commits()):
            have = _have(dst, [c.hash for c in batch])
            new = [c for c in batch if c.hash not in have]
            present += len(batch) - len(new)
            wanted = {c.result.hash for c in new if c.result is not None} - known
            known |= _have_blobs(dst, sorted(wanted))
            for commit in new:
                if key is not None and key.verdict(commit):
                    skipped.append(commit.hash)
                    continue
                result, data = commit.result, None
                if result is not None and result.hash not in known:
                    try:
                        data = src.get_blob(result)  # verified against its hash
                    except BlobError:
                        skipped.append(commit.hash)
                        continue
                    known.add(result.hash)
                    blobs += 1
                    size += len(data)
                writer.add(commit, data)
                copied += 1
            writer.flush()
            advance(f"{copied} copied, {present} there already", step=False)
            for _ in batch:
                advance()
    return SyncResult(copied, present, blobs, size, tuple(skipped))
