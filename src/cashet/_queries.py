"""The provenance and maintenance methods both clients share, over a *sync* store.

:class:`StoreQueries` (``log``, ``show``, ``get``, ``diff``, ``why``, ``history``, ``rm``,
``gc``, ``clear``, ``invalidate``, ``stats``, ``check``, ``export``, ``import_archive``):
``Client`` inherits them; ``AsyncClient`` runs them off the event loop over a sync view of
its store, so both validate, fail and answer the same way by construction
(``tests/test_async_parity.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from blake3 import blake3

from cashet.errors import CommitNotFoundError, ReadOnlyStoreError
from cashet.models import Commit, Lease, ObjectRef, TaskDef, TaskStatus
from cashet.protocols import (
    BlobOpener,
    CheckReport,
    Checkup,
    CommitPage,
    Serializer,
    Store,
    StreamSerializer,
    TagQuery,
    supports,
)
from cashet.provenance.diff import diff_commits
from cashet.provenance.explain import Explanation
from cashet.provenance.explain import why as explain_why
from cashet.provenance.query import (
    check_tag_query,
    gc_cutoff,
    parse_status,
    resolve_commit,
    resolve_result,
)
from cashet.provenance.usage import (
    FunctionUsage,
    flush_hits,
    hit_totals,
    usage_by_function,
    with_hits,
)
from cashet.stores.base import full_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from cashet.provenance.archive import ExportResult, ImportResult
    from cashet.provenance.lineage import Lineage
    from cashet.provenance.sync import SyncResult
    from cashet.provenance.verify import VerifyOutcome, VerifyReport

__all__ = ["STREAM_MIN", "StoreQueries", "load_result", "running_commit", "store_check"]


#: Results at least this large load from a file the store opens (when it can, and the
#: serializer can read one), so that their bytes and their value are never held at once.
STREAM_MIN = 1 << 20


def load_result(store: Store, serializer: Serializer, ref: ObjectRef) -> Any:
    """Load the result ``ref`` from ``store``: a large one straight from its file when the
    store can open it and the serializer read one (see ``protocols.BlobOpener``)."""
    if (
        ref.size >= STREAM_MIN
        and supports(store, BlobOpener)
        and supports(serializer, StreamSerializer)
    ):
        opened = cast(BlobOpener, store).open_blob(ref)
        if opened is not None:
            with opened as f:
                return cast(StreamSerializer, serializer).load(f)
    return serializer.loads(store.get_blob(ref))


class StoreQueries:
    """Provenance and maintenance over a sync store: ``Client``'s, and ``AsyncClient``'s
    off the loop.

    Args:
        store: a sync ``Store`` (for ``AsyncClient``: a sync view of its async store).
        serializer: loads results for :meth:`get`.
    """

    store: Store
    serializer: Serializer

    def __init__(self, store: Store, serializer: Serializer) -> None:
        self.store = store
        self.serializer = serializer

    def _load_object(self, ref: ObjectRef, data: bytes | None = None) -> Any:
        if data is None:
            return load_result(self.store, self.serializer, ref)
        return self.serializer.loads(data)

    def log(
        self,
        func_name: str | None = None,
        limit: int | None = 50,
        status: TaskStatus | str | None = None,
        tags: TagQuery | None = None,
    ) -> list[Commit]:
        """List commits, newest first.

        Args:
            func_name: only commits of the function with this name.
            limit: at most this many (``None``: all).
            status: only commits in this state (``TaskStatus`` or its string value).
                ``"running"`` lists the calls in flight right now (their leases), each as
                a commit with no result (its hash names no stored commit).
            tags: only commits carrying every tag (``{key: None}`` = the key with any value).

        Raises:
            ValueError: ``limit`` is negative, or ``status`` is unknown (the valid values
                are listed).
            TypeError: ``tags`` is not a mapping of strings to strings or ``None``.
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
        if func_name is not None and not isinstance(func_name, str):
            raise TypeError(f"func_name must be a str, not {type(func_name).__name__}")
        query = None if tags is None else check_tag_query(tags) or None
        wanted = parse_status(status)
        flush_hits(self.store)
        commits = self.store.list_commits(
            func_name=func_name, limit=limit, status=wanted, tags=query
        )
        if wanted is not TaskStatus.RUNNING or query:
            return with_hits(self.store, commits)
        running = [
            running_commit(fingerprint, lease, claimed_at)
            for fingerprint, lease, claimed_at in full_store(self.store).running_claims()
            if (func_name is None or lease.func_name == func_name)
            # a call shipped to a worker holds a second lease there, "<fingerprint>#run"
            # (executors/remote.py): one call in flight, listed once
            and "#" not in fingerprint
        ]
        running.extend(commits)
        running.sort(key=lambda c: c.created_at, reverse=True)
        return running if limit is None else running[:limit]

    def log_page(
        self,
        func_name: str | None = None,
        status: TaskStatus | str | None = None,
        tags: TagQuery | None = None,
        text: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> CommitPage:
        """One page of commits, newest first: :meth:`log` for browsing a large store.

        Args:
            func_name, status, tags: as :meth:`log`.
            text: only commits whose hash starts with it or whose record (function,
                arguments, tags, error, source) contains it, ignoring case. A page reads
                at most ``provenance.pages.TEXT_WINDOW`` commits looking for it
                (``partial`` then says the cursor continues the search).
            cursor: the ``cursor`` of the previous page (``None``: the newest).
            limit: the page size, 1 to 500.

        Returns:
            A :class:`~cashet.protocols.CommitPage` (``commits``, ``cursor``, ``scanned``,
            ``partial``), hits filled in.

        Raises:
            ValueError: a bad ``limit``, ``status`` or ``cursor``.
            TypeError: a filter of the wrong type.
        """
        from cashet.provenance.pages import MAX_PAGE, page_commits

        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, not {limit!r}")
        for name, value in (("func_name", func_name), ("text", text), ("cursor", cursor)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        query = None if tags is None else check_tag_query(tags) or None
        wanted = parse_status(status)
        if wanted is TaskStatus.RUNNING:  # calls in flight are leases, not stored commits
            return CommitPage(self.log(func_name, limit, wanted, query))
        flush_hits(self.store)
        page = page_commits(self.store, func_name, wanted, query, text, cursor, limit)
        page.commits = with_hits(self.store, page.commits)
        return page

    def show(self, hash: str) -> Commit | None:
        """Return the commit with this hash or unique hash prefix, or ``None`` if none has it.

        The full hash of a result blob (``ref.hash``) also works when the store can look
        results up (``SQLiteStore``): the newest commit that produced it is returned.
        The commit carries its provenance: ``task_def.func_source``,
        ``task_def.args_snapshot``, ``parent_hash``, ``created_at``, ``tags``, ``error``,
        ``compute_seconds`` and ``result`` (blob hash and size). Expired commits are shown
        until ``gc`` deletes them.

        Raises:
            AmbiguousHashError: the prefix matches several commits (``.candidates``).
            ValueError: ``hash`` is not hexadecimal.
        """
        flush_hits(self.store)
        try:
            commit = resolve_commit(self.store, hash, by_result=True)
        except CommitNotFoundError:  # the spec's Store returns Commit | None, and so do we
            return None
        return with_hits(self.store, [commit])[0]

    def get(self, hash: str) -> Any:
        """Load the result recorded by a commit.

        Args:
            hash: a commit hash or unique prefix; or, when no commit has it, the full hash
                of a result blob (``ref.hash``).

        Raises:
            CommitNotFoundError: nothing matches, or the commit has no result (a failed run).
            AmbiguousHashError: the prefix matches several commits.
            BlobError: the result blob is missing or corrupt.
        """
        ref, _ = resolve_result(self.store, hash)
        return self._load_object(ref)

    def diff(self, hash_a: str, hash_b: str) -> dict[str, Any]:
        """Compare two commits (hashes or unique prefixes).

        Returns:
            ``{'func_changed': ..., 'args_changed': ..., 'output_changed': ..., ...}`` plus
            ``source_diff`` (unified diff of the sources) and ``args_diff`` (a list of
            ``{'path', 'change', 'a', 'b'}`` from a structural comparison of the argument
            snapshots).
        """
        a = resolve_commit(self.store, hash_a, by_result=True)
        return diff_commits(a, resolve_commit(self.store, hash_b, by_result=True))

    def why(self, hash: str) -> Explanation:
        """Why the commit ``hash`` (or a unique prefix) was computed: what differs from the
        nearest earlier run of the same function (the most key parts in common, then the
        newest). ``str(explanation)`` is a readable report.

        Raises:
            CommitNotFoundError: no commit has that hash.
            AmbiguousHashError: the prefix matches several commits.
        """
        return explain_why(self.store, hash)

    def history(self, hash: str) -> list[Commit]:
        """Every run of the same function and arguments as this commit, oldest first.

        Forced runs and re-runs after a TTL expired are separate commits (each one's
        ``parent_hash`` names the run before it); expired commits are left out.
        """
        return self.store.get_history(resolve_commit(self.store, hash, by_result=True).hash)

    def rm(self, hash: str) -> bool:
        """Delete one commit (hash or unique prefix) and the blob only it used.

        Returns:
            Whether a commit was deleted: ``False`` when no commit has that hash (or it
            went away meanwhile).

        Raises:
            AmbiguousHashError: the prefix matches several commits.
            ValueError: ``hash`` is not hexadecimal.
        """
        try:
            target = resolve_commit(self.store, hash)
        except CommitNotFoundError:
            return False
        return self.store.delete_commit(target.hash)

    def gc(
        self, older_than: timedelta = timedelta(days=30), max_size_bytes: int | None = None
    ) -> int:
        """Evict entries unused for ``older_than``, expired entries and orphaned blobs.

        Age is measured from a commit's last access: its last cache hit, or its creation if
        never hit (``show`` and ``get`` do not count). With ``max_size_bytes``, least
        recently used entries are also evicted until the stored bytes fit. A running
        task's lease is never touched.

        Returns:
            The number of commits removed.

        Raises:
            TypeError: ``older_than`` is not a ``timedelta``.
            ValueError: a negative age or size.
        """
        cutoff = gc_cutoff(older_than)
        if max_size_bytes is not None and (
            isinstance(max_size_bytes, bool)
            or not isinstance(max_size_bytes, int)
            or max_size_bytes < 0
        ):
            raise ValueError(
                f"max_size_bytes must be a non-negative integer, not {max_size_bytes!r}"
            )
        return self.store.evict(cutoff, max_size_bytes)

    def gc_preview(
        self, older_than: timedelta = timedelta(days=30), max_size_bytes: int | None = None
    ) -> list[Commit]:
        """The commits :meth:`gc` with these arguments would evict now, least recently used
        first; nothing is deleted (``cashet gc --dry-run``).

        Commits last used before the cutoff and expired ones; with ``max_size_bytes``, then
        the least recently used until the result bytes they hold fit (an estimate: the
        store's own size counts compression and bookkeeping).
        """
        cutoff = gc_cutoff(older_than)
        now = datetime.now(cutoff.tzinfo)
        commits = [
            c for c in self.store.list_commits(limit=None) if c.status is not TaskStatus.RUNNING
        ]
        commits.sort(key=lambda c: c.last_accessed or c.created_at)
        doomed = [
            c for c in commits if (c.last_accessed or c.created_at) < cutoff or c.is_expired(now)
        ]
        if max_size_bytes is None:
            return doomed
        gone = {c.hash for c in doomed}
        users: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for c in commits:
            if c.result is not None and c.hash not in gone:
                users[c.result.hash] = users.get(c.result.hash, 0) + 1
                sizes[c.result.hash] = c.result.size
        held = sum(sizes.values())
        for c in commits:
            if held <= max_size_bytes:
                break
            if c.hash in gone:
                continue
            doomed.append(c)
            if c.result is not None:
                users[c.result.hash] -= 1
                if not users[c.result.hash]:
                    held -= sizes[c.result.hash]
        return doomed

    def clear(self) -> int:
        """Remove every entry and orphaned blob (``gc(timedelta(0))``); return the count."""
        return self.gc(timedelta(0))

    def invalidate(self, tags: TagQuery) -> int:
        """Delete the commits carrying all these tags (``{key: None}`` = key present).

        Returns:
            The number of commits deleted.

        Raises:
            ValueError: ``tags`` is empty (that would match everything).
            TypeError: ``tags`` is not a mapping of strings to strings or ``None``.
        """
        return full_store(self.store).delete_by_tags(check_tag_query(tags, allow_empty=False))

    def stats(self) -> dict[str, Any]:
        """Return commit and storage counters, and what the cache saved.

        Keys: ``total_commits``, ``completed_commits``, ``stored_objects``, ``disk_bytes``,
        ``blob_objects``, ``blob_bytes``, ``inline_objects``, ``inline_bytes``; ``hits``
        (calls served from the cache, on a store that counts them), ``misses`` (the
        commits: each one a computation) and ``seconds_saved`` (the compute time the hits
        avoided: each hit counts its commit's ``compute_seconds``).
        """
        counters: dict[str, Any] = dict(self.store.stats())
        hits, saved = hit_totals(self.store)
        counters["hits"] = hits
        counters["misses"] = counters.get("total_commits", 0)
        counters["seconds_saved"] = round(saved, 6)
        return counters

    def lineage(self, hash: str, depth: int = 10, max_nodes: int = 200) -> Lineage:
        """The lineage of a commit: the commits whose results it was computed from
        (``ResultRef`` arguments), and those computed from its result, recursively.

        Args:
            hash: a commit hash or unique prefix (or a result blob's full hash).
            depth: how many steps to follow each way.
            max_nodes: at most this many commits (``truncated`` says when cut).

        Raises:
            CommitNotFoundError: nothing matches.
            AmbiguousHashError: the prefix matches several commits.
            ValueError: ``depth`` or ``max_nodes`` is not positive.
        """
        from cashet.provenance.lineage import lineage

        return lineage(
            self.store, resolve_commit(self.store, hash, by_result=True), depth, max_nodes
        )

    def verify(
        self,
        sample: int = 10,
        seed: int | None = None,
        advance: Callable[[VerifyOutcome], None] | None = None,
    ) -> VerifyReport:
        """Re-run up to ``sample`` cached calls and compare their outputs with the cache.

        Only calls whose function can be imported (module and name recorded in the commit,
        the code unchanged) and whose arguments the commit records in full (a literal
        snapshot that hashes back to the call's key) can be re-run; the others are listed
        as skipped, with why. The cache is never changed.

        Args:
            sample: how many calls to re-run (picked at random).
            seed: the random choice's seed (``None``: a fresh one).
            advance: called with each outcome as it comes (for a progress bar).
        """
        from cashet.provenance.verify import verify_sample

        return verify_sample(self.store, self.serializer, sample, seed, advance)

    def stats_by_function(self) -> list[FunctionUsage]:
        """Per function: runs, hits, hit rate, compute time, time saved, bytes stored.

        Reads every commit (``cashet stats --by-function``); most time saved first.
        """
        return usage_by_function(self.store)

    def savings_by_function(self) -> list[dict[str, Any]]:
        """Per function: ``runs``, ``hits``, ``hit_rate`` and the compute seconds the hits
        saved (``seconds_saved``), most saved first: the web UI's stats.

        From the store's indexes when it has them (SQLite: no commit is read, so it stays
        fast on a store of millions), else from :meth:`stats_by_function`.
        """
        from cashet.provenance.usage import savings_by_function

        return savings_by_function(self.store)

    def export(self, path: str | os.PathLike[str]) -> ExportResult:
        """Write every commit and the result blobs they use to a portable ``.tar.gz``.

        Streams (one blob in memory at a time); the file appears only when complete.

        Returns:
            The number of commits written (an ``int``; ``.blobs``, ``.bytes`` and
            ``.skipped`` — commits left out because their blob was unreadable — too).
        """
        from cashet.provenance.archive import export_archive

        return export_archive(self.store, path)

    def import_archive(self, path: str | os.PathLike[str]) -> ImportResult:
        """Add the commits and blobs of an archive made by :meth:`export`.

        The archive is untrusted: every member name, blob and commit is verified before
        anything is written, and nothing is written unless all of it is valid. Commits the
        store already has are skipped.

        Returns:
            The number of commits imported (an ``int``, also ``.imported``), with
            ``.skipped`` and ``.blobs``.

        Raises:
            ArchiveError: the archive was rejected; the store is unchanged.
        """
        from cashet.provenance.archive import import_archive

        if getattr(self.store, "readonly", False) is True:
            raise ReadOnlyStoreError(f"{self.store!r} is read-only: cannot import {path}")
        return import_archive(self.store, path)

    def push(self, store: Store | str) -> SyncResult:
        """Copy the commits (and their result blobs) that ``store`` lacks into it.

        Incremental (only what the other side lacks), verified, resumable: run again after
        an interruption (see :mod:`cashet.provenance.sync`).

        Args:
            store: the other store, or its URL (``postgresql://``, ``redis://``,
                ``sqlite:///``, a directory); a URL's store is closed afterwards.

        Returns:
            The number of commits copied (an ``int``; ``.present``, ``.blobs``,
            ``.bytes`` and ``.skipped`` too).
        """
        from cashet.provenance.sync import copy_commits

        with other_store(store, must_exist=False) as other:
            return copy_commits(self.store, other, "push")

    def pull(self, store: Store | str) -> SyncResult:
        """Copy the commits (and their result blobs) of ``store`` that this store lacks.

        As :meth:`push`, the other way.

        Raises:
            ReadOnlyStoreError: this store is read-only.
            StoreError: ``store`` names a directory with no store.
        """
        from cashet.provenance.sync import copy_commits

        if getattr(self.store, "readonly", False) is True:
            raise ReadOnlyStoreError(f"{self.store!r} is read-only: cannot pull into it")
        with other_store(store, must_exist=True) as other:
            return copy_commits(other, self.store, "pull")

    def check(self, repair: bool = False) -> CheckReport:
        """Check the store for damage (``cashet doctor``); with ``repair``, fix what can be.

        What is checked and repaired: :mod:`cashet.stores.sqlite.doctor` (SQLite) and
        :mod:`cashet.stores.redis.doctor_ops` (Redis); a store without the ``Checkup``
        capability gives a report saying so.

        Returns:
            A :class:`~cashet.protocols.CheckReport` (``ok``, ``findings``, ``to_dict()``).

        Raises:
            TypeError: ``repair`` is not a bool.
            StoreError: the store cannot be read at all.
        """
        if not isinstance(repair, bool):
            raise TypeError(f"repair must be a bool, not {type(repair).__name__}")
        return store_check(self.store, repair)

    # --- reads the shells need (the server and the CLI never touch the store) -------------

    def resolve_result(self, hash: str) -> tuple[ObjectRef, Commit | None]:
        """Return the result blob ``hash`` names, and the commit that recorded it.

        Args:
            hash: a commit hash or unique prefix; or, when no commit has it, the full hash
                of a result blob (then the commit is ``None``).

        Raises:
            CommitNotFoundError: nothing matches, or the commit has no result (a failed run).
            AmbiguousHashError: the prefix matches several commits.
            ValueError: ``hash`` is not hexadecimal.
        """
        return resolve_result(self.store, hash)

    def result_bytes(self, result: str | ObjectRef) -> bytes:
        """Return a stored result's serialized bytes, verified but not deserialized.

        Args:
            result: what :meth:`get` takes (a commit hash or unique prefix, or a full blob
                hash), or the blob itself (``ref.object_ref``).

        Raises:
            CommitNotFoundError, AmbiguousHashError: as :meth:`get`.
            BlobError: the result blob is missing or corrupt.
        """
        ref = result if isinstance(result, ObjectRef) else resolve_result(self.store, result)[0]
        return self.store.get_blob(ref)


@contextmanager
def other_store(store: Store | str, must_exist: bool) -> Iterator[Store]:
    """The store ``store`` is, or the one its URL names (opened here and closed after;
    ``must_exist``: a directory that holds no store is an error, not a new store)."""
    if not isinstance(store, str):
        yield store
        return
    from cashet.stores.sqlite.layout import check_store_dir
    from cashet.stores.urls import open_store, sqlite_path

    path = sqlite_path(store) if not store.lower().startswith("postgres") else None
    if must_exist and path is not None:
        check_store_dir(path)
    opened: Store = open_store(store)
    try:
        yield opened
    finally:
        opened.close()


def store_check(store: Any, repair: bool) -> CheckReport:
    """``store.check(repair)``, or a report that the store has no check (not a problem)."""
    if supports(store, Checkup):
        return cast(CheckReport, store.check(repair))
    report = CheckReport(repr(store), repair)
    report.add("unsupported", repr(store), "this store cannot check itself").problem = False
    return report


def running_commit(fingerprint: str, lease: Lease, claimed_at: datetime) -> Commit:
    """A call in flight, shown as a ``RUNNING`` commit (not stored: its hash names nothing)."""
    func_hash, _, args_hash = fingerprint.partition(":")
    task_def = TaskDef(func_name=lease.func_name, func_hash=func_hash, args_hash=args_hash)
    digest = blake3(f"running\0{fingerprint}\0{lease.owner}".encode()).hexdigest()
    return Commit(
        hash=digest,
        task_def=task_def,
        status=TaskStatus.RUNNING,
        created_at=claimed_at,
        expires_at=None,
        tags={"host": lease.host, "pid": str(lease.pid)},
    )
