"""Public import path of the executors: ``from cashet.executor import LocalExecutor``."""

from cashet.executors.async_local import AsyncLocalExecutor
from cashet.executors.local import LocalExecutor

__all__ = ["AsyncLocalExecutor", "LocalExecutor"]
