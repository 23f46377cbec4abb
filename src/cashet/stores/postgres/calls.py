"""What the PostgreSQL operations ask their driver to do: one statement at a time.

An operation is a generator (:data:`Flow`) that yields :class:`Q` statements and receives
each one's answer; the sync driver (:mod:`~cashet.stores.postgres.store`) answers with a
blocking psycopg call, the async one (:mod:`~cashet.stores.postgres.async_store`) with an
awaited one. The generator's return value is the operation's. An operation run as one
transaction says so to its driver (``run(flow, tx=True)``); others run statement by
statement on an autocommit connection (a point read is one round trip, no ``BEGIN``).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

__all__ = ["Flow", "Q", "Tx"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Q:
    """One statement and what to send back.

    Attributes:
        sql: the statement (``%s`` placeholders).
        params: its parameters; for ``fetch="many"``, a list of parameter tuples.
        fetch: ``"one"`` (the first row or ``None``), ``"all"`` (every row), ``"count"``
            (the rows affected) or ``"many"`` (``executemany``; answers ``None``).
        binary: ask for results in binary form (large ``bytea``, no hex round trip).
    """

    sql: str
    params: Sequence[Any] | None = None
    fetch: Literal["one", "all", "count", "many"] = "all"
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Tx:
    """A step of a longer operation run as one transaction of its own: the driver runs
    ``flow`` inside ``BEGIN``/``COMMIT`` and sends back its result (``evict`` removes its
    commits one short transaction at a time, never holding locks for long)."""

    flow: Generator[Any, Any, Any]


#: An operation: yields statements (or :class:`Tx` steps), receives their answers, returns
#: its result.
Flow: TypeAlias = Generator[Q | Tx, Any, T]
