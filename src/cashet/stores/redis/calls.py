"""The vocabulary between the Redis operations and their drivers: a :class:`RedisCall` is
one command (or script) an operation needs, an :class:`OpFlow` is an operation, a generator
that yields calls and receives their replies."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from cashet.stores.redis.keys import Script

__all__ = ["OpFlow", "RedisCall", "run_script", "text"]

T = TypeVar("T")
#: An operation: yields the calls it needs, receives their replies, returns its result.
OpFlow = Generator["RedisCall", Any, T]


@dataclass(slots=True)
class RedisCall:
    """One Redis command (or script, run by ``EVALSHA``) an operation needs.

    ``op`` says what was being done, for error messages. Every call is safe to send again
    after a dropped connection: the writes are idempotent, and the scripts that report what
    they did carry a token under which a resent call finds the first reply (``_once``).
    """

    op: str
    args: tuple[Any, ...]
    script: Script | None = None
    #: Carries blob bytes (maybe megabytes): pack it without copying them.
    bulky: bool = False
    #: Plain commands sent together in one round trip (``args`` unused); the reply is the
    #: list of their replies.
    batch: tuple[tuple[Any, ...], ...] = ()
    #: Not Redis: a step on the store's blob store (``blobs=``), called by the driver (the
    #: async one in a worker thread); its return value is the reply.
    io: Callable[[], Any] | None = None


def run_script(op: str, script: Script, keys: tuple[str, ...], *argv: Any) -> RedisCall:
    """The call that runs ``script`` on ``keys`` with arguments ``argv``."""
    return RedisCall(op, (len(keys), *keys, *argv), script)


def text(value: Any) -> str:
    """A reply as ``str`` (replies are bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
