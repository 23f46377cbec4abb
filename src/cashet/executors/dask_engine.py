"""``DaskExecutor``: misses shipped to a Dask ``distributed`` cluster.

Hits are answered on the driver and never reach the scheduler; each miss is one
``client.submit`` of :func:`cashet.executors.remote.run_shipped` (not pure: Dask must not
merge two submits of one call; cashet's lease already makes them one), returning only the
small commit. A worker that dies mid-task is replaced by Dask, which reruns the task (its
``allowed-failures``); the rerun holds the same lease, so the call still runs to one
commit. ``distributed`` is imported when an executor is made, never by ``import cashet``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from cashet.core.batch import BatchItem
from cashet.executors.dask_graph import KeyCall, run_graph, task_key
from cashet.executors.remote import Shipment, ShippingExecutor, run_shipped
from cashet.models import Commit, ResultRef
from cashet.protocols import Serializer, Store

__all__ = ["DaskExecutor"]


class DaskExecutor(ShippingExecutor):
    """Run misses on a Dask cluster (needs ``cashet[dask]``).

    Args:
        client: a ``distributed.Client``, a scheduler address (``"tcp://host:8786"``: a
            client is made and owned by this executor), or ``None``: the current default
            client (``distributed.default_client()``), looked up at each submit.
        running_ttl: see :class:`~cashet.executors.remote.ShippingExecutor`.

    A SQLite store is accepted when every worker runs on this host (a ``LocalCluster``);
    with workers elsewhere, use ``RedisStore``.

    Raises:
        ImportError: ``distributed`` is not installed (``pip install cashet[dask]``).
    """

    def __init__(self, client: Any = None, running_ttl: timedelta = timedelta(minutes=5)) -> None:
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - the extra is in the dev lock
            raise ImportError("DaskExecutor needs distributed: pip install 'cashet[dask]'") from exc
        super().__init__(running_ttl)
        self._remote: dict[int, bool] = {}
        self._owned = isinstance(client, str)
        if isinstance(client, str):
            client = distributed.Client(client)  # type: ignore[no-untyped-call]
        self._client: Any = client

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` submitted to."""
        if self._client is not None:
            return self._client
        import distributed

        return distributed.default_client()  # type: ignore[no-untyped-call]

    @property
    def remote(self) -> bool:  # type: ignore[override]
        """Whether any worker of the cluster runs on another host than this one (asked
        once per client: a cluster that grows onto other hosts later is not seen)."""
        client = self.client
        known = self._remote.get(id(client))
        if known is None:
            workers = client.scheduler_info().get("workers", {})
            known = self._remote[id(client)] = any(not _is_this_host(a) for a in workers)
        return known

    def _start(self, shipment: Shipment, store: Any) -> Any:
        key = task_key(shipment.task_def)
        return self.client.submit(run_shipped, shipment, pure=False, key=key)

    def _wait(self, handle: Any) -> Commit | None:
        result: Commit | None = handle.result()
        return result

    def _cancel(self, handle: Any) -> None:
        handle.cancel()

    def submit_graph(
        self,
        order: list[BatchItem],
        key_call: KeyCall,
        store: Store,
        serializer: Serializer,
        make_ref: Callable[[Commit], ResultRef[Any]],
        done: Callable[[bool, int], None],
    ) -> dict[Hashable, ResultRef[Any]]:
        """Run a planned ``submit_many`` batch as one graph of futures on the cluster
        (:mod:`cashet.executors.dask_graph`): a downstream call starts on a worker as soon
        as its inputs are done."""
        return run_graph(self, self.client, order, key_call, store, serializer, make_ref, done)

    def close(self) -> None:
        """Close the client this executor made from an address (not one it was given)."""
        if self._owned and self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self._client!r})"


_LOCAL_NAMES = {"localhost", socket.gethostname()}


def _is_this_host(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if host in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    try:
        mine = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return False
    return host in mine
