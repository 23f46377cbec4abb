"""Commits page by page, newest first, over any store (``Client.log_page``).

A store with the :class:`~cashet.protocols.CommitPages` capability (SQLite) reads one index
range per page; any other store is scanned through ``list_commits`` (correct, and as slow
as that store's full listing).
"""

from __future__ import annotations

from typing import cast

from cashet.models import Commit, TaskStatus
from cashet.protocols import CommitPage, CommitPages, Store, TagQuery, supports

__all__ = ["MAX_PAGE", "TEXT_WINDOW", "page_commits"]

#: The largest page.
MAX_PAGE = 500
#: A text search reads at most this many commits per page (the cursor continues it).
TEXT_WINDOW = 20_000


def page_commits(
    store: Store,
    func_name: str | None,
    status: TaskStatus | None,
    tags: TagQuery | None,
    text: str | None,
    cursor: str | None,
    limit: int,
) -> CommitPage:
    """One page of commits older than ``cursor`` matching every filter (see
    :meth:`cashet.client.Client.log_page`)."""
    needle = text.strip().lower() if text else None
    if supports(store, CommitPages):
        pages = cast(CommitPages, store)
        return pages.page_commits(
            func_name, status, tags, needle or None, cursor, limit, TEXT_WINDOW
        )
    return _scan(store, func_name, status, tags, needle or None, cursor, limit)


def _key(c: Commit) -> tuple[float, str]:
    return (c.created_at.timestamp(), c.hash)


def _scan(
    store: Store,
    func_name: str | None,
    status: TaskStatus | None,
    tags: TagQuery | None,
    needle: str | None,
    cursor: str | None,
    limit: int,
) -> CommitPage:
    before: tuple[float, str] | None = None
    if cursor is not None:
        at, sep, h = cursor.partition("_")
        try:
            if not sep:
                raise ValueError
            before = (float(at), h)
        except ValueError:
            raise ValueError(f"{cursor!r} is not a page cursor of this store") from None
    commits = store.list_commits(func_name=func_name, limit=None, status=status, tags=tags)
    commits.sort(key=_key, reverse=True)
    found: list[Commit] = []
    scanned = 0
    for c in commits:
        if before is not None and _key(c) >= before:
            continue
        scanned += 1
        if needle and not (c.hash.startswith(needle) or _matches(c, needle)):
            continue
        found.append(c)
        if len(found) == limit:
            stamp, last = _key(c)
            return CommitPage(found, f"{stamp!r}_{last}", scanned)
    return CommitPage(found, None, scanned)


def _matches(c: Commit, needle: str) -> bool:
    td = c.task_def
    parts = [td.func_name, td.module, td.args_snapshot, c.error or "", td.func_source]
    parts += [f"{k} {v}" for k, v in c.tags.items()]
    return any(needle in p.lower() for p in parts)
