"""The decisions of the PostgreSQL stores, free of IO: commits, blobs, verified reads.

Each method returns a :data:`~cashet.stores.postgres.calls.Flow` that both drivers run
(:mod:`~cashet.stores.postgres.store`, :mod:`~cashet.stores.postgres.async_store`). Leases,
hits and removal are in :mod:`~cashet.stores.postgres.upkeep_ops`.

Every commit read is verified (:func:`~cashet.hashing.commits.verified_commit`, once per
commit per process: the decoded template is kept, callers get copies). A row that fails is
moved into the ``quarantine`` table and left out of the read; a lookup answers only with a
commit whose own content says it is the asked fingerprint's completed, cacheable,
unexpired run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cashet import _process
from cashet.errors import BlobCorruptedError, BlobMissingError
from cashet.hashing.commits import check_commit_hash, stored_json, verified_commit
from cashet.hashing.lazy import decode_lazily
from cashet.models import Commit, ObjectRef, TaskStatus
from cashet.protocols import Hit, TagQuery
from cashet.stores.base import copy_commit
from cashet.stores.blobs import decode_blob, verify_blob
from cashet.stores.postgres.blob_table import BlobBackend
from cashet.stores.postgres.calls import Flow, Q
from cashet.stores.postgres.schema import Sql, commit_row, from_epoch, to_epoch
from cashet.stores.quarantine import COMMIT, INDEX, QuarantineEntry, hit_fingerprint, report

__all__ = ["CommitOps", "check_prefix"]

_HEX = "0123456789abcdef"
_Template = tuple[Commit, str]


def check_prefix(prefix: str) -> str:
    """``prefix`` lowered, checked to be 1-64 hex digits.

    Raises:
        ValueError: it is not a hash prefix.
    """
    p = prefix.strip().lower()
    if not p or len(p) > 64 or p.strip(_HEX):
        raise ValueError(f"{prefix!r} is not a hash prefix (1-64 hex digits)")
    return p


def _accessed(value: Any) -> Any:
    return None if value is None else from_epoch(value)


class CommitOps:
    """Commits and blobs of one store (its SQL, its blob backend, its decoded commits)."""

    _DECODED_MAX = 4096
    _BATCH = 512

    def __init__(self, sql: Sql, blobs: BlobBackend, inline_threshold: int, where: str) -> None:
        self.sql = sql
        self.blobs = blobs
        self.inline_threshold = inline_threshold
        self.where = where
        self._decoded: _process.BoundedCache[str, _Template] = _process.BoundedCache(
            self._DECODED_MAX
        )

    # verified reads

    def template(self, h: str, body: Any) -> Flow[_Template | None]:
        """The verified commit ``h`` (kept) and the fingerprint it answers; ``None`` when
        the row is damaged (it is quarantined)."""
        cached = self._decoded.get(h)
        if cached is not None:
            return cached
        try:
            template = verified_commit(body, h, decode_lazily)  # the tail: when read
        except ValueError as exc:
            yield from self.quarantine(h, body, f"the stored commit is damaged: {exc}")
            return None
        cached = (template, hit_fingerprint(template))
        self._decoded.put(h, cached)
        return cached

    def commits(self, rows: Sequence[Any]) -> Flow[list[Commit]]:
        """The verified commits of ``(hash, body, last_accessed, ...)`` rows, damaged ones
        left out (and quarantined)."""
        out = []
        for row in rows:
            cached = self._decoded.get(row[0])
            if cached is None:
                cached = yield from self.template(row[0], row[1])
                if cached is None:
                    continue
            out.append(copy_commit(cached[0], _accessed(row[2])))
        return out

    def quarantine(self, h: str, body: Any, reason: str, kind: str = COMMIT) -> Flow[None]:
        """Move commit ``h`` (still holding ``body``) into the quarantine."""
        record = body if isinstance(body, str) else repr(body)
        entry = QuarantineEntry(str(h), kind, reason, time.time(), record)
        if kind == COMMIT:
            gone = yield Q(self.sql.delete_raw, (h,), "one")
            if gone is None:
                return  # deleted meanwhile: not ours to move
            if gone[0] is not None:
                yield from self.unref(gone[0])
        yield Q(self.sql.quarantine, (entry.hash, kind, reason, entry.found_at, record), "count")
        self._decoded.pop(h, None)
        report(self.where, entry)

    def quarantined(self) -> Flow[list[QuarantineEntry]]:
        rows = yield Q(self.sql.quarantined)
        return [QuarantineEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # commits

    def put_commit(self, commit: Commit) -> Flow[None]:
        """Record ``commit`` once; count a reference to its result blob (one transaction)."""
        check_commit_hash(commit)
        row = commit_row(commit, commit.sealed_json or stored_json(commit))
        inserted = yield Q(self.sql.insert_commit, row, "count")
        if not inserted:
            return
        if commit.tags:
            created = row[5]
            tags = [(commit.hash, k, str(v), created) for k, v in commit.tags.items()]
            yield Q(self.sql.insert_tag, tags, "many")
        if commit.result is not None:
            yield Q(self.sql.ref_blob, (commit.result.hash,), "count")

    def get_commit(self, hash: str) -> Flow[Commit | None]:
        rows = yield Q(self.sql.get_commit, (hash,))
        found = yield from self.commits(rows)
        return found[0] if found else None

    def lookup(self, fingerprint: str) -> Flow[Hit | None]:
        """The hit for ``fingerprint`` with a small result's verified bytes: one query."""
        row = yield Q(self.sql.find_hit, (fingerprint, time.time()), "one")
        if row is None:
            return None
        h, body, last_accessed, inline = row
        cached = self._decoded.get(h)
        if cached is None:
            cached = yield from self.template(h, body)
            if cached is None:
                return None
        template, answers = cached
        if answers != fingerprint or (template.expires_at is not None and template.is_expired()):
            yield from self._mismatch(template, fingerprint)
            return None
        data = None
        if inline is not None and template.result is not None:
            blob = template.result.hash
            try:
                decoded = decode_blob(inline, blob)
                verify_blob(decoded, blob)
                data = decoded
            except BlobCorruptedError:  # get_blob reports (and forgets) it
                pass
        return Hit(copy_commit(template, _accessed(last_accessed)), data)

    def _mismatch(self, template: Commit, fingerprint: str) -> Flow[None]:
        """A lookup of ``fingerprint`` found ``template``, which does not answer it: its
        columns contradict its verified body. They are rewritten from the body, noted."""
        td = template.task_def
        if td.fingerprint == fingerprint and template.is_expired():
            return  # expired between the query and now: no damage
        row = commit_row(template, "")
        yield Q(self.sql.fix_columns, (*row[1:7], row[8], template.hash), "count")
        reason = "its indexed columns contradicted its verified content (rewritten)"
        yield Q(self.sql.quarantine, (template.hash, INDEX, reason, time.time(), None), "count")
        report(self.where, QuarantineEntry(template.hash, INDEX, reason, time.time()))

    def latest(self, fingerprint: str) -> Flow[Commit | None]:
        rows = yield Q(self.sql.latest, (fingerprint,))
        found = yield from self.commits(rows)
        return found[0] if found else None

    def history(self, hash: str) -> Flow[list[Commit]]:
        rows = yield Q(self.sql.history, (hash, time.time()))
        return (yield from self.commits(rows))

    def by_result(self, blob_hash: str, limit: int) -> Flow[list[Commit]]:
        rows = yield Q(self.sql.by_result, (blob_hash, limit))
        return (yield from self.commits(rows))

    def iter_page(self, after: tuple[float, int]) -> Flow[tuple[list[Commit], Any]]:
        """One page of commits, oldest first, after ``(created_at, seq)``; the next cursor
        (``None`` at the end)."""
        rows = yield Q(self.sql.iter, (*after, self._BATCH))
        commits = yield from self.commits(rows)
        more = (rows[-1][3], rows[-1][4]) if len(rows) == self._BATCH else None
        return commits, more

    def list_commits(
        self,
        func_name: str | None,
        limit: int | None,
        status: TaskStatus | None,
        tags: TagQuery | None,
    ) -> Flow[list[Commit]]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        if limit == 0:
            return []
        where: list[str] = []
        params: list[Any] = []
        if func_name is not None:
            where.append("c.func_name = %s")
            params.append(func_name)
        if status is not None:
            where.append("c.status = %s")
            params.append(TaskStatus(status).value)
        for key, value in (tags or {}).items():
            clause = f"EXISTS (SELECT 1 FROM {self.sql.quoted}.tags t WHERE t.hash = c.hash"
            clause += " AND t.key = %s" + ("" if value is None else " AND t.value = %s") + ")"
            where.append(clause)
            params.extend([key] if value is None else [key, value])
        query = f"SELECT c.hash, c.body, c.last_accessed FROM {self.sql.quoted}.commits c"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY c.created_at DESC, c.seq DESC"
        want = limit
        while True:
            rows = yield Q(query + ("" if want is None else f" LIMIT {int(want)}"), params)
            commits = yield from self.commits(rows)
            if limit is None or want is None or len(commits) >= limit or len(rows) < want:
                return commits[:limit]
            want += len(rows) - len(commits)  # as many more as were left out

    def resolve_prefix(self, prefix: str, limit: int) -> Flow[list[str]]:
        p = check_prefix(prefix)
        rows = yield Q(self.sql.prefix, (p + "%", limit))
        return [r[0] for r in rows]

    def have_commits(self, hashes: Sequence[str]) -> Flow[set[str]]:
        """Which of ``hashes`` are recorded here (one query per thousand)."""
        found: set[str] = set()
        wanted = list(dict.fromkeys(hashes))
        for i in range(0, len(wanted), 1000):
            rows = yield Q(self.sql.have_commits, (wanted[i : i + 1000],))
            found.update(r[0] for r in rows)
        return found

    def put_many(
        self, blobs: Sequence[tuple[str, int, bytes]], commits: Sequence[Commit]
    ) -> Flow[None]:
        """Store encoded blobs ``(hash, size, encoded)``, then record ``commits``: a few
        statements for the whole batch (run as one transaction)."""
        inline: list[bytes | None] = []
        for h, _, encoded in blobs:
            if len(encoded) >= self.inline_threshold:
                yield from self.blobs.put_if_absent(h, encoded)
                inline.append(None)
            else:
                inline.append(encoded)
        if blobs:
            index = ([b[0] for b in blobs], [b[1] for b in blobs], [len(b[2]) for b in blobs])
            yield Q(self.sql.many_blobs, (time.time(), *index, inline), "count")
            yield Q(self.sql.blobs_found, (index[0],), "count")
        rows = {}
        for commit in commits:
            check_commit_hash(commit)
            rows[commit.hash] = commit_row(commit, commit.sealed_json or stored_json(commit))
        if not rows:
            return
        columns = [list(col) for col in zip(*rows.values(), strict=True)]
        tags = [(c.hash, k, str(v)) for c in commits for k, v in c.tags.items()]
        tag_columns = [list(col) for col in zip(*tags, strict=True)] if tags else [[], [], []]
        yield Q(self.sql.many_commits, (*columns, *tag_columns), "count")

    def have_blobs(self, hashes: Sequence[str]) -> Flow[set[str]]:
        """Which of the blobs ``hashes`` are stored here (one query per thousand)."""
        found: set[str] = set()
        wanted = list(dict.fromkeys(hashes))
        for i in range(0, len(wanted), 1000):
            rows = yield Q(self.sql.have_blobs, (wanted[i : i + 1000],))
            found.update(r[0] for r in rows)
        return found

    def touch(self, hash: str, when: Any) -> Flow[None]:
        yield Q(self.sql.touch, (to_epoch(when), hash), "count")

    # blobs

    def has_blob(self, hash: str) -> Flow[bool]:
        row = yield Q(self.sql.has_blob, (hash,), "one")
        return row is not None

    def put_encoded(self, h: str, size: int, encoded: bytes) -> Flow[ObjectRef]:
        """Store a blob (encoded) once by hash: its bytes first, then its index row."""
        ref = ObjectRef(h, size)
        known = yield Q(self.sql.has_blob, (h,), "one")
        if known is not None:
            return ref
        inline: bytes | None = encoded
        if len(encoded) >= self.inline_threshold:
            yield from self.blobs.put_if_absent(h, encoded)
            inline = None
        now = time.time()
        if (yield Q(self.sql.insert_blob, (h, size, len(encoded), inline, h, now), "count")):
            yield Q(self.sql.blob_found, (inline, h), "count")  # commits that had lost it
        return ref

    def read_blob(self, h: str) -> Flow[tuple[bytes, bool]]:
        """A blob's bytes: ``(stored form, False)`` to decode and verify, or ``(bytes,
        True)`` verified already by the blob store.

        Raises:
            BlobMissingError: not stored (a lost copy's index row is dropped: storing the
                same bytes again repairs it).
        """
        row = yield Q(self.sql.blob_info, (h,), "one")
        if row is None:
            raise BlobMissingError(f"blob {h[:16]}... is not in the store", h)
        if row[0] is not None:
            return bytes(row[0]), False
        data = yield from self.blobs.get(h)
        if data is None:
            yield Q(self.sql.forget_blob, (h,), "one")
            yield Q(self.sql.blob_lost, (h,), "count")
            raise BlobMissingError(f"blob {h[:16]}... is lost from {self.blobs!r}", h)
        return data

    def forget_blob(self, h: str) -> Flow[None]:
        """Drop a damaged blob (its index row and its bytes)."""
        row = yield Q(self.sql.forget_blob, (h,), "one")
        yield Q(self.sql.blob_lost, (h,), "count")
        if row is not None and row[0]:
            yield from self.blobs.delete(h)

    def unref(self, h: str) -> Flow[int]:
        """One reference fewer to blob ``h``; freed at zero. The stored bytes freed."""
        row = yield Q(self.sql.unref_blob, (h,), "one")
        if row is None or row[0] > 0:
            return 0
        gone = yield Q(self.sql.forget_blob, (h,), "one")
        if gone is None:
            return 0
        if gone[0]:
            yield from self.blobs.delete(h)
        return 1
