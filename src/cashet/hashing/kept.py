"""Digests of a call's big buffers, kept from its key to its manifest: hashed once a miss.

A miss hashes its arguments twice: into the key (``hash_args``, every argument in one
stream) and again for the key's manifest (``hash_value`` of each argument, its own digest
for ``show`` and ``explain``). Both streams carry the same digests of the same big
buffers in place of their bytes (an array or bytes of 8 MiB or more, a frame's numeric
buffers and its text columns): those digests are what costs. :data:`KeptDigests` holds
them, by the object they were taken from, while the key is hashed (``hash_args`` writes),
and gives them to the manifest (``hash_value`` reads) instead of hashing the buffers again.

Never a stale digest: one ``KeptDigests`` serves one call, and only between its key and
its description, before its function runs (nothing of the caller's runs in between). The
client makes it for the call, lends it (:func:`lent`) around its executor's ``submit``
under the call's argument digest, and the description takes it (:func:`take`) at most
once, for that same digest; a value mutated later is hashed afresh by the next call. An
object is matched by identity and held here meanwhile, so its ``id`` cannot be reused by
another. Pure: no IO, no import of the rest of ``hashing``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeAlias

__all__ = ["KeptDigests", "kept_get", "kept_put", "lent", "take"]

#: ``(kind, id(owner), part) -> (owner, value)``: what one call's key kept (a plain dict:
#: the client makes one per call, on the hit path too).
KeptDigests: TypeAlias = dict[tuple[str, int, int], tuple[Any, Any]]


def kept_get(kept: KeptDigests, kind: str, owner: Any, part: int = 0) -> Any:
    """What ``kept`` holds for ``owner`` (the very object), or ``None``."""
    entry = kept.get((kind, id(owner), part))
    return entry[1] if entry is not None and entry[0] is owner else None


def kept_put(kept: KeptDigests, kind: str, owner: Any, value: Any, part: int = 0) -> None:
    """Keep ``value`` for ``owner`` (held, so its id stays its own meanwhile)."""
    kept[(kind, id(owner), part)] = (owner, value)


#: ``[args digest, digests]`` of the call being submitted in this context (the digests
#: set to ``None`` once taken).
_LENT: ContextVar[list[Any] | None] = ContextVar("cashet_kept", default=None)


@contextmanager
def lent(kept: KeptDigests, args_hash: str) -> Iterator[None]:
    """Offer ``kept`` to the description of the call keyed ``args_hash`` within the block
    (the executor's ``submit``); dropped when the block ends."""
    offer: list[Any] = [args_hash, kept]
    token = _LENT.set(offer)
    try:
        yield
    finally:
        _LENT.reset(token)
        offer[1] = None
        kept.clear()


def take(args_hash: str) -> KeptDigests | None:
    """The digests lent for the call keyed ``args_hash``, once (then ``None``)."""
    offer = _LENT.get()
    if offer is None or offer[0] != args_hash:
        return None
    kept: KeptDigests | None = offer[1]
    offer[1] = None
    return kept
