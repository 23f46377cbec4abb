"""``StoreConfig``: what reopens a store in another process (a cluster worker).

A built-in store has it as ``store.config``; :func:`cashet.stores.shipping.open_store` opens
the store it describes, once per process. Plain data, picklable, no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StoreConfig"]


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """How to reopen a store elsewhere.

    Attributes:
        kind: ``"sqlite"``, ``"redis"`` or ``"postgres"``.
        location: the SQLite store's absolute directory, or the Redis URL or PostgreSQL
            DSN (with its password: never print a config, print the store).
        options: the constructor's keyword options, as ``(name, value)`` pairs; ``blobs``
            is a :class:`~cashet.stores.objects.base.BlobStoreConfig` when the store keeps
            its blobs in a blob store (its credentials, if given as arguments, inside).
    """

    kind: str
    location: str
    options: tuple[tuple[str, Any], ...] = ()

    def __repr__(self) -> str:  # the URL may hold a password
        where = self.location if self.kind == "sqlite" else "<url>"
        return f"StoreConfig({self.kind!r}, {where!r})"
