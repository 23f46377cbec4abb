"""Public import path of the executors: ``from cashet.executor import LocalExecutor``.

The cluster executors import their engine (``distributed``, ``celery``) only when one is
made: importing this module pulls neither.
"""

from cashet.executors.async_local import AsyncLocalExecutor
from cashet.executors.celery_engine import CeleryExecutor
from cashet.executors.dask_engine import DaskExecutor
from cashet.executors.futures import FuturesExecutor
from cashet.executors.local import LocalExecutor
from cashet.executors.processes import ProcessExecutor

__all__ = [
    "AsyncLocalExecutor",
    "CeleryExecutor",
    "DaskExecutor",
    "FuturesExecutor",
    "LocalExecutor",
    "ProcessExecutor",
]
