"""Public import path of the executors: ``from cashet.executor import LocalExecutor``."""

from cashet.executors.local import LocalExecutor

__all__ = ["LocalExecutor"]
