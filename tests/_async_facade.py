"""A sync facade over ``AsyncClient``, so the Client-level tests run unchanged on both clients.

The ``AsyncClient`` lives in a private event loop in a thread. Every coroutine method is sent
there with ``asyncio.run_coroutine_threadsafe`` and waited for; ``AsyncResultRef``s come back
as ``ResultRef``s whose ``load()`` awaits the real ``load()`` there, and go back in (as
arguments, to chain) as the original ``AsyncResultRef``. Tasks registered with ``task`` are
wrapped the same way. Exceptions are the ones the async client raised.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from cashet.async_client import AsyncClient, AsyncTaskFunction
from cashet.core.refs import replace_refs
from cashet.models import AsyncResultRef, ResultRef


class FacadeRef(ResultRef[Any]):
    """A ``ResultRef`` standing for an ``AsyncResultRef`` of the facade's loop."""

    __slots__ = ("async_ref",)

    def __init__(self, async_ref: AsyncResultRef[Any], facade: AsyncClientFacade) -> None:
        super().__init__(async_ref.commit, lambda _ref, _data: facade.run(async_ref.load()))
        self.async_ref = async_ref

    def load(self) -> Any:
        """The async ref's value (which consumes the bytes a commit carries, not this)."""
        if not self._loaded:
            self._value = self._loader(self.object_ref, None)
            self._loaded = True
        return self._value


class FacadeTask:
    """A sync callable over an ``AsyncTaskFunction``: calling it submits and waits."""

    def __init__(self, task: AsyncTaskFunction[Any], facade: AsyncClientFacade) -> None:
        self.task = task
        self._facade = facade
        functools.update_wrapper(self, task.func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._facade.submit(self, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self._facade.submit(self, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


class AsyncClientFacade:
    """The sync ``Client`` API over an ``AsyncClient`` built by ``make`` in a private loop."""

    def __init__(self, make: Callable[[], AsyncClient]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="facade-loop", daemon=True)
        self._thread.start()

        async def build() -> AsyncClient:
            return make()  # inside the loop, as an async application would

        self.async_client = self.run(build())

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        while True:
            try:
                self._loop.run_forever()
                return
            except (KeyboardInterrupt, SystemExit):
                # asyncio re-raises these out of the loop after storing them in the task;
                # keep serving so the waiting caller gets them from its future.
                continue

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # wrapping both ways

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, AsyncResultRef):
            return FacadeRef(value, self)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        if isinstance(value, dict) and any(isinstance(v, AsyncResultRef) for v in value.values()):
            return {k: self._wrap(v) for k, v in value.items()}
        if isinstance(value, AsyncTaskFunction):
            return FacadeTask(value, self)
        return value

    @staticmethod
    def _unwrap(value: Any) -> Any:
        if isinstance(value, FacadeTask):
            return value.task
        if isinstance(value, tuple | list) and any(isinstance(v, FacadeTask) for v in value):
            return type(value)(AsyncClientFacade._unwrap(v) for v in value)
        return replace_refs(value, lambda r: r.async_ref if isinstance(r, FacadeRef) else r)

    def _forward(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(self._unwrap(a) for a in args)
            kwargs = {k: self._unwrap(v) for k, v in kwargs.items()}
            return self._wrap(self.run(method(*args, **kwargs)))

        return call

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.async_client, name)
        if inspect.iscoroutinefunction(attr):
            return self._forward(attr)
        if name == "task":

            def task(*args: Any, **kwargs: Any) -> Any:
                out = attr(*args, **kwargs)
                if isinstance(out, AsyncTaskFunction):
                    return FacadeTask(out, self)
                return lambda f: FacadeTask(out(f), self)

            return task
        return attr

    def submit_many(self, tasks: Any, max_workers: int | None = None) -> Any:
        if isinstance(tasks, dict):
            batch: Any = {k: self._unwrap(v) for k, v in tasks.items()}
        else:
            batch = [self._unwrap(v) for v in tasks]
        return self._wrap(self.run(self.async_client.submit_many(batch, max_workers)))

    def close(self) -> None:
        self.run(self.async_client.close())

    def __enter__(self) -> AsyncClientFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def shutdown(self) -> None:
        """Close the client, finish what is pending and stop the loop (test teardown)."""
        if not self._loop.is_running():
            return
        try:
            self.close()
        finally:

            async def drain() -> None:
                me = asyncio.current_task()
                others = [t for t in asyncio.all_tasks() if t is not me]
                for t in others:
                    t.cancel()
                await asyncio.gather(*others, return_exceptions=True)
                await self._loop.shutdown_default_executor()

            self.run(drain())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()
