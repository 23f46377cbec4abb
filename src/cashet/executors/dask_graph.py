"""``submit_many`` on Dask as one graph: a downstream call waits for its inputs on the cluster.

A batch's ``TaskRef`` wiring becomes futures depending on futures, so a downstream task
starts on a worker as soon as its inputs are done, without a round trip through the driver.

The key stays the driver's. A call whose inputs are known on the driver (no ``TaskRef``, or
upstream calls that were hits) is keyed there and, on a miss, shipped with its lease as any
miss is (:func:`~cashet.executors.remote.run_shipped`). A call with an upstream still running
on the cluster cannot be keyed fully there: its key holds the upstream *result's* blob hash,
known only once the upstream ran. The driver keys it with a placeholder in each pending
input's place (the function's identity, every other argument) and ships it as a
:class:`Chained` call; the worker that receives the upstream commits (:func:`run_chained`)
first hashes the arguments with the same placeholders and must get the driver's digest
(else it hands the call back to the driver: this worker would not key the call as the
driver does), then puts the real results in and hashes once more, only *values* that
differ by one blob hash (never code). It then runs the whole call there: lookup, lease,
compute, record. The manifest is the driver's, with its arguments made again from the real
ones.

Anything the cluster hands back (an upstream whose lease was lost, a worker that would key
differently) is run by the driver afterwards, in the batch's order, as an ordinary call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cashet.core.batch import BatchItem, wired_args
from cashet.core.effects import Release
from cashet.core.flow import acquire_flow, call_flow, unique_token
from cashet.core.refs import find_refs, replace_refs
from cashet.executors._drive import finish, run_flow
from cashet.executors.local import _SyncHandler
from cashet.executors.remote import (
    Shipment,
    ShippingExecutor,
    _small,
    _StoreLoader,
    _worker_executor,
    drive_acquire,
    run_shipped,
    unpack_call,
)
from cashet.hashing.calls import hash_call
from cashet.hashing.commits import seal_commit
from cashet.hashing.manifest import manifest_arguments
from cashet.hashing.snapshot import args_snapshot
from cashet.models import Commit, ObjectRef, ResultRef, TaskDef, TaskStatus
from cashet.protocols import Serializer, Store
from cashet.stores.base import full_store
from cashet.stores.shipping import open_store

__all__ = ["HANDED_BACK", "Chained", "run_chained", "run_graph"]

log = logging.getLogger("cashet")

#: The blob hash a pending input stands in with, ``{n}`` its place among the upstreams.
_PENDING = "cashet-pending-upstream-{}"
_PENDING_PREFIX = _PENDING.format("")

#: What a worker answers for a call it hands back to the driver.
HANDED_BACK = "cashet:handed-back"

#: ``key_call(func, args, kwargs)``: the function to run, its arguments and the call's
#: ``TaskDef``, keyed on the driver (call-site options such as ``_tags`` taken out).
KeyCall = Callable[
    [Callable[..., Any], tuple[Any, ...], dict[str, Any]],
    tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], TaskDef],
]


@dataclass(frozen=True, slots=True)
class Chained:
    """A downstream call shipped before its upstream calls finished.

    ``shipment.task_def.args_hash`` is the driver's digest of the arguments with each
    pending input replaced by a placeholder; ``shipment.lease`` is ``None`` (the worker
    takes the lease once it knows the key).
    """

    shipment: Shipment
    upstreams: int


def _placeholder(n: int, loader: Any) -> ResultRef[Any]:
    stand_in = Commit(
        hash=_PENDING.format(n),
        task_def=TaskDef("pending", "", ""),
        status=TaskStatus.COMPLETED,
        result=ObjectRef(_PENDING.format(n), 0),
    )
    return ResultRef(stand_in, loader)


def _pending_index(ref: Any) -> int | None:
    h = ref.hash
    if isinstance(h, str) and h.startswith(_PENDING_PREFIX):
        return int(h[len(_PENDING_PREFIX) :])
    return None


# --- the worker's half -------------------------------------------------------------------


def run_chained(chained: Chained, *upstream: Any) -> Commit | str | None:
    """Finish a chained call's key with its upstream commits and run it on this worker.

    Returns the commit (small: no result bytes), or :data:`HANDED_BACK` when the driver
    must run the call itself (an upstream came back without a result, or this worker
    hashes the call's arguments differently from the driver).

    Raises:
        TaskError: the function failed on every attempt (recorded, as locally).
    """
    shipment = chained.shipment
    if len(upstream) != chained.upstreams or any(
        not isinstance(c, Commit) or c.result is None for c in upstream
    ):
        return HANDED_BACK
    func, args, kwargs, serializer = unpack_call(shipment.pickler, shipment.call)
    template = shipment.task_def
    try:
        same = hash_call(func, args, kwargs) == template.args_hash
    except Exception as exc:
        log.warning("%s: cannot hash its arguments on this worker: %s", template.func_name, exc)
        same = False
    if not same:
        log.info("%s is keyed differently on this worker: the driver runs it", template.func_name)
        return HANDED_BACK
    loader = _StoreLoader(shipment.store, serializer)

    def real(ref: Any) -> Any:
        n = _pending_index(ref)
        return ref if n is None else ResultRef(upstream[n], loader)

    args = replace_refs(args, real)
    kwargs = replace_refs(kwargs, real)
    task_def = replace(template, args_hash=hash_call(func, args, kwargs))
    _, _, manifest = shipment.description
    if manifest:
        manifest = {**manifest, "arguments": manifest_arguments(func, args, kwargs)}
    refs = tuple(dict.fromkeys(r.hash for r in find_refs(kwargs, find_refs(args))))
    description = (args_snapshot(args, kwargs), refs, manifest)
    store = full_store(open_store(shipment.store))
    ex = _worker_executor(shipment.running_ttl)
    handler = _SyncHandler(func, args, kwargs, store, serializer, ex)
    flow = call_flow(task_def, shipment.running_ttl, seal_commit, lambda _td: description)
    return _small(finish(run_flow(flow, handler.answer, False)))


# --- the driver's half -------------------------------------------------------------------


@dataclass(slots=True)
class _InFlight:
    future: Any
    handler: _SyncHandler | None = None  # the driver's lease is renewed through it
    owner: str = ""
    fingerprint: str = ""


def run_graph(
    executor: ShippingExecutor,
    engine: Any,
    order: list[BatchItem],
    key_call: KeyCall,
    store: Store,
    serializer: Serializer,
    make_ref: Callable[[Commit], ResultRef[Any]],
    done: Callable[[bool, int], None],
) -> dict[Hashable, ResultRef[Any]]:
    """Run a planned batch (``order``: topological) on the Dask client ``engine``.

    ``done(cached, running)`` is told of each finished call (the progress bar).

    Raises:
        TaskError: a task failed; tasks depending on it were not run.
        ExecutorError: as :meth:`ShippingExecutor.submit`.
    """
    import distributed

    config = executor._store_config(store)
    results: dict[Hashable, ResultRef[Any]] = {}
    flying: dict[Hashable, _InFlight] = {}
    back: set[Hashable] = set()
    try:
        for item in order:
            pending = [d for d in item.deps if d not in results]
            if pending:
                flying[item.key] = _ship_chained(
                    executor, engine, item, pending, results, flying, key_call, config, serializer
                )
                continue
            func, args, kwargs, td = key_call(item.func, *wired_args(item, results))
            handler = _SyncHandler(func, args, kwargs, store, serializer, executor._local)
            got = drive_acquire(acquire_flow(td, executor.running_ttl), handler.answer)
            if isinstance(got, Commit):
                results[item.key] = make_ref(got)
                done(True, len(flying))
                continue
            shipment = executor.shipment(func, args, kwargs, td, got, config, serializer)
            future = engine.submit(run_shipped, shipment, pure=False, key=task_key(td))
            flown = flying[item.key] = _InFlight(future)
            if got is not None:
                handler.heartbeat.add(handler.store, td.fingerprint, got.owner)
                flown.handler, flown.owner, flown.fingerprint = handler, got.owner, td.fingerprint
        by_future = {f.future: k for k, f in flying.items()}
        for future in distributed.as_completed(list(by_future)):  # type: ignore[no-untyped-call]
            key = by_future[future]
            answer = future.result()
            _settle(flying.pop(key), released=True)
            if isinstance(answer, Commit):
                results[key] = make_ref(answer)
                done(answer.from_cache, len(flying))
            else:  # handed back, or a lease lost before the worker ran it
                back.add(key)
    except BaseException:
        for flown in flying.values():
            try:
                flown.future.cancel()
            except Exception as exc:  # the original error stays the error
                log.debug("could not cancel a shipped call: %s", exc)
            _settle(flown, released=False)
        raise
    for item in order:  # what came back, in the batch's order, on the driver
        if item.key in back:
            func, args, kwargs, td = key_call(item.func, *wired_args(item, results))
            results[item.key] = make_ref(executor.submit(func, args, kwargs, td, store, serializer))
            done(False, 0)
    return results


def task_key(td: TaskDef) -> str:
    """The key of a shipped call on the Dask scheduler (unique: never merged with another)."""
    return f"cashet-{td.func_name}-{unique_token()}"


def _ship_chained(
    executor: ShippingExecutor,
    engine: Any,
    item: BatchItem,
    pending: list[Hashable],
    results: Mapping[Hashable, ResultRef[Any]],
    flying: Mapping[Hashable, _InFlight],
    key_call: KeyCall,
    config: Any,
    serializer: Serializer,
) -> _InFlight:
    loader = _StoreLoader(config, serializer)
    wiring: dict[Hashable, Any] = dict(results)
    wiring.update({d: _placeholder(n, loader) for n, d in enumerate(pending)})
    func, args, kwargs, td = key_call(item.func, *wired_args(item, wiring))
    shipment = executor.shipment(func, args, kwargs, td, None, config, serializer)
    inputs = [flying[d].future for d in pending]
    future = engine.submit(
        run_chained, Chained(shipment, len(pending)), *inputs, pure=False, key=task_key(td)
    )
    return _InFlight(future)


def _settle(flown: _InFlight, released: bool) -> None:
    """Stop renewing the driver's lease of a shipped call; give it back if the call did not
    end on a worker (a worker that ran it released it)."""
    handler = flown.handler
    if handler is None:
        return
    handler.heartbeat.remove(flown.owner)
    if not released:
        handler.release(Release(flown.fingerprint, flown.owner))
