"""What ``Client`` and ``AsyncClient`` share, written once.

* :class:`ClientBase`: construction checks, the ``task`` decorator and its registry, the
  option handling and function identity of every ``submit``, and batch wiring. The
  clients keep only their IO: how they hash, drive the executor and load results.
* :class:`TaskFunctionBase`: a registered task (``TaskFunction`` calls, ``AsyncTaskFunction``
  awaits).
* :class:`StoreQueries` (in :mod:`cashet._queries`, re-exported here): the provenance and
  maintenance methods over a *sync* store.

Below the clients (docs/architecture.md): imports the core, hashing, provenance and models,
never a client module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from cashet._log import configure_from_env
from cashet._queries import StoreQueries, running_commit, store_check
from cashet.core.batch import BatchItem, wired_args
from cashet.core.options import (
    CALL_OPTIONS,
    DEFAULT_OPTIONS,
    TaskOptions,
    call_options,
    check_ignore_globals,
    check_versions,
    make_options,
    make_task_def,
)
from cashet.errors import CashetError
from cashet.hashing import function_identity, hash_call, ignore
from cashet.hashing.manifest import key_manifest, versioned_identity
from cashet.models import Commit, TaskDef
from cashet.protocols import Serializer
from cashet.stores.modes import check_mode

if TYPE_CHECKING:
    from cashet.hashing.functions import FunctionIdentity

__all__ = [
    "ClientBase",
    "StoreQueries",
    "TaskFunctionBase",
    "check_workers",
    "default_store_dir",
    "executor_commit",
    "running_commit",
    "store_check",
    "touch_after",
]

T = TypeVar("T")
TF = TypeVar("TF", bound="TaskFunctionBase[Any]")


def default_store_dir() -> Path:
    """Return ``$CASHET_DIR`` if set, else ``.cashet`` in the current directory."""
    return Path(os.environ.get("CASHET_DIR") or ".cashet")


def check_workers(workers: Any) -> int:
    """Return ``workers`` when it is a positive ``int``.

    Raises:
        ValueError: anything else (``bool`` included).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"max_workers must be a positive integer, not {workers!r}")
    return workers


class TaskFunctionBase(Generic[T]):
    """A function registered with ``@client.task``; the subclasses make calling it submit.

    Args:
        client: the client that submits it.
        func: the function.
        options: its default options (call-site ``_x`` options beat them).
    """

    #: Shown in ``repr``: ``<cashet task f>`` or ``<cashet async task f>``.
    _kind = "task"

    def __init__(self, client: Any, func: Callable[..., T], options: TaskOptions) -> None:
        self.client = client
        self.func = func
        self.options = options
        self.name: str = options.name or str(getattr(func, "__qualname__", repr(func)))
        functools.update_wrapper(cast(Any, self), func)

    def __repr__(self) -> str:
        return f"<cashet {self._kind} {self.name}>"

    def __cashet_hash__(self) -> Any:
        """A task read by other code (a method of a class, a helper) is keyed by its function."""
        return self.func

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        """Bind like a function: ``@client.task`` on a method gives ``Model(3).predict``, a
        task of the bound method, so the instance is part of the call's key (issue 12)."""
        if obj is None:
            return self
        bind = getattr(self.func, "__get__", None)
        if bind is None:
            return self
        return type(self)(self.client, bind(obj, objtype), self.options)


class ClientBase(Generic[TF]):
    """The IO-free half of a client, shared by ``Client`` and ``AsyncClient``.

    A subclass sets ``_task_class`` (what ``@client.task`` makes) and ``store``.
    """

    _task_class: type[TF]
    serializer: Serializer
    max_workers: int

    def __init__(
        self,
        serializer: Serializer | None,
        max_workers: int,
        versions: str = "off",
        mode: str | None = None,
    ) -> None:
        """Check ``max_workers`` and set the defaults; the subclass then sets its store.

        ``mode``: ``"normal"``, ``"off"``, ``"readonly"`` or ``"refresh"``; ``None``:
        ``$CASHET_MODE``, else ``"normal"``.
        """
        configure_from_env()
        check_workers(max_workers)
        self.versions = check_versions(versions)
        if mode is None:
            mode = os.environ.get("CASHET_MODE", "").strip().lower() or "normal"
        #: How calls use the cache (see ``Client``'s ``mode``).
        self.mode = check_mode(mode)
        self._refresh = self.mode == "refresh"
        if serializer is None:
            from cashet.serializers import PickleSerializer

            serializer = PickleSerializer()
        self.serializer = serializer
        self.max_workers = max_workers
        self._tasks: dict[str, TF] = {}
        self._closed = False

    # --- registering ----------------------------------------------------------------------

    def task(
        self,
        func: Callable[..., T] | None = None,
        /,
        *,
        name: str | None = None,
        cache: bool = True,
        force: bool = False,
        tags: Mapping[str, str] | None = None,
        retries: int = 0,
        timeout: float | None = None,
        ttl: float | None = None,
        ignore_globals: Iterable[str] | None = None,
        versions: str | None = None,
    ) -> TF | Callable[[Callable[..., T]], TF]:
        """Register a task with default options; calling it submits it.

        Use bare (``@client.task``) or with options (``@client.task(retries=3)``). The task
        is also registered under its name for the HTTP server. Not a coroutine on
        ``AsyncClient`` either: registering does no IO.

        ``ignore_globals`` names values the task's code reads that must stay out of its cache
        key (global names such as ``"LOCK"``, dotted paths such as ``"cfg.CACHE"``, closure
        variables): a lock, a logger, a connection, a cache. They are neither hashed nor
        warned about; a change to them does not change the key (see ``docs/cache-keys.md``;
        the same as ``@cashet.hashing.ignore(...)``).

        ``versions`` puts the versions of the libraries the task uses in its key:
        ``"off"``, ``"major"``, ``"minor"`` or ``"exact"`` (default: the client's policy).

        Raises:
            ValueError: an option has a wrong type or value.
            TypeError: what is decorated is not callable.
        """
        options = make_options(
            cache=cache, force=force, tags=tags, retries=retries, timeout=timeout, ttl=ttl,
            name=name, versions=versions,
        )  # fmt: skip
        ignored = check_ignore_globals(ignore_globals)

        def register(f: Callable[..., T]) -> TF:
            if not callable(f):
                raise TypeError(f"@task needs a callable, not {type(f).__name__}")
            if isinstance(f, TaskFunctionBase):
                f = f.func
            if ignored:
                ignore(*ignored)(getattr(f, "__func__", f))
            tf = self._task_class(self, f, options)
            self._tasks[tf.name] = tf
            return tf

        if func is not None:
            return register(func)
        return register

    @property
    def tasks(self) -> dict[str, TF]:
        """Tasks registered with ``@client.task``, by name."""
        return dict(self._tasks)

    # --- submitting -----------------------------------------------------------------------

    def _prepare(
        self,
        func: Callable[..., Any],
        cache: Any,
        force: Any,
        tags: Any,
        retries: Any,
        timeout: Any,
        ttl: Any,
    ) -> tuple[Callable[..., Any], TaskOptions, FunctionIdentity]:
        """The function to run, its options and identity: everything of a ``submit`` but
        the arguments' digest (hashed by the client: in a thread when big, on ``AsyncClient``).
        """
        func, options = self._resolve(func, cache, force, tags, retries, timeout, ttl)
        return func, options, self._identity(func, options)

    def _identity(self, func: Callable[..., Any], options: TaskOptions) -> FunctionIdentity:
        """The function's identity, with library versions in it when the policy says so
        (``@client.task(versions=...)``, else ``Client(versions=...)``)."""
        identity = function_identity(func)
        policy = options.versions or self.versions
        return identity if policy == "off" else versioned_identity(identity, policy)

    def _resolve(
        self,
        func: Callable[..., Any],
        cache: Any,
        force: Any,
        tags: Any,
        retries: Any,
        timeout: Any,
        ttl: Any,
    ) -> tuple[Callable[..., Any], TaskOptions]:
        """The function to run and its options (:meth:`_prepare` without the identity)."""
        if self._closed:
            raise CashetError(f"this {type(self).__name__} is closed")
        options = DEFAULT_OPTIONS
        if isinstance(func, TaskFunctionBase):
            options = func.options
            func = func.func
        options = call_options(options, cache, force, tags, retries, timeout, ttl)
        if self._refresh and options.cache and not options.force:
            options = replace(options, force=True)  # mode="refresh": every call recomputes
        if not callable(func):
            raise TypeError(f"submit() needs a callable, not {type(func).__name__}")
        return func, options

    def _lookup_key(
        self,
        func: Callable[..., Any],
        cache: Any,
        force: Any,
        tags: Any,
        retries: Any,
        timeout: Any,
        ttl: Any,
    ) -> tuple[Callable[..., Any], TaskOptions] | None:
        """What a cache-only :meth:`lookup` keys on (as :meth:`_resolve`), or ``None`` when
        such a call would run whatever the cache holds (``cache=False`` or ``force=True``)."""
        resolved = self._resolve(func, cache, force, tags, retries, timeout, ttl)
        if not resolved[1].cache or resolved[1].force:
            return None
        return resolved

    def _explained_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[TaskDef, dict[str, Any], str]:
        """The key of a call, its manifest and its source, for ``explain`` (nothing runs).
        Call-site options (``_cache=``...) are taken as ``submit`` takes them."""
        func, args, kwargs, task_def = self._keyed_call(func, args, kwargs)
        identity = task_def.identity
        return task_def, key_manifest(identity, func, args, kwargs), identity.source

    def _keyed_call(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], TaskDef]:
        """The function to run, its arguments and the call's ``TaskDef``, as ``submit``
        keys them: call-site options (``_cache=``...) are taken out of ``kwargs`` (changed
        in place)."""
        given = {k[1:]: kwargs.pop(k) for k in CALL_OPTIONS if k in kwargs}
        func, options, identity = self._prepare(func, *(given.get(k[1:]) for k in CALL_OPTIONS))
        return func, args, kwargs, make_task_def(identity, options, hash_call(func, args, kwargs))

    @staticmethod
    def _hit_needs_touch(commit: Commit, now: datetime) -> bool:
        """Whether a hit on ``commit`` at ``now`` records its access (as ``submit`` does)."""
        return commit.last_accessed is None or now - commit.last_accessed > touch_after()

    @staticmethod
    def _batch_call(
        item: BatchItem, results: Mapping[Hashable, Any]
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """``item``'s function and arguments, its ``TaskRef``s replaced by ``results``."""
        return (item.func, *wired_args(item, results))

    @staticmethod
    def _batch_output(
        tasks: Sequence[Any] | Mapping[Hashable, Any], results: Mapping[Hashable, T]
    ) -> list[T] | dict[Hashable, T]:
        """The results of a batch shaped as its input: by key for a dict, else a list."""
        if isinstance(tasks, Mapping):
            return {k: results[k] for k in tasks}
        return [results[i] for i in range(len(results))]


@functools.cache
def touch_after() -> timedelta:
    """``core.flow.TOUCH_AFTER``, imported on first use (it would slow ``import cashet``)."""
    from cashet.core.flow import TOUCH_AFTER

    return TOUCH_AFTER


def executor_commit(done: Any) -> Commit:
    """The commit an executor's ``submit`` answered.

    Ours answer the ``Commit``; the published protocol's executors answer
    ``(commit, was_cached)``, and those work unchanged (issue 12): ``was_cached`` sets
    ``commit.from_cache``.
    """
    if isinstance(done, tuple) and len(done) == 2 and isinstance(done[0], Commit):
        commit: Commit = done[0]
        commit.from_cache = bool(done[1])
        return commit
    if not isinstance(done, Commit):
        raise TypeError(
            f"the executor's submit() returned {type(done).__name__}: expected a Commit "
            "or a (Commit, was_cached) pair"
        )
    return done
