"""``FuturesExecutor``: misses shipped to any ``concurrent.futures.Executor``.

A process pool, loky's, Ray's or submitit's executors, ``distributed.Client.get_executor()``:
anything with ``submit(fn, *args) -> Future``. Hits are answered on the driver; each miss
runs :func:`cashet.executors.remote.run_shipped` in the pool (see that module).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cashet.executors.remote import Shipment, ShippingExecutor, run_shipped
from cashet.models import Commit

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

__all__ = ["FuturesExecutor"]


class FuturesExecutor(ShippingExecutor):
    """Run misses in a ``concurrent.futures.Executor`` (the caller owns and shuts it down).

    Args:
        pool: the executor to submit to.
        running_ttl: see :class:`~cashet.executors.remote.ShippingExecutor`.
        remote: the pool's workers may run on other hosts (a SQLite store is then refused
            at once; without it, a worker that cannot see the SQLite directory fails the
            call with the same advice).

    Raises:
        TypeError: ``pool`` has no ``submit``.
    """

    def __init__(
        self, pool: Executor, running_ttl: timedelta = timedelta(minutes=5), remote: bool = False
    ) -> None:
        if not callable(getattr(pool, "submit", None)):
            raise TypeError(f"pool must be a concurrent.futures.Executor, not {type(pool)}")
        super().__init__(running_ttl)
        self.pool = pool
        self.remote = remote

    def _start(self, shipment: Shipment, store: Any) -> Future[Commit | None]:
        return self.pool.submit(run_shipped, shipment)

    def _wait(self, handle: Any) -> Commit | None:
        result: Commit | None = handle.result()
        return result

    def _cancel(self, handle: Any) -> None:
        handle.cancel()

    def __repr__(self) -> str:
        return f"FuturesExecutor({self.pool!r})"
