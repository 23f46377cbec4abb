"""cashet: persistent, content-addressed memoization for Python functions and pipelines.

Run a function once; every later call with the same function source and arguments returns
the stored result, across restarts, processes and machines::

    from cashet import Client

    client = Client()
    ref = client.submit(expensive, [1, 2, 3], scale=2.0)
    ref.load()
"""

from cashet._version import __version__
from cashet.client import Client, TaskFunction
from cashet.errors import (
    AmbiguousHashError,
    ArchiveError,
    BlobCorruptedError,
    BlobError,
    BlobMissingError,
    CashetError,
    ClosureWarning,
    CommitNotFoundError,
    DamagedStoreWarning,
    ReadOnlyStoreError,
    ReadOnlyStoreWarning,
    ResultSerializationError,
    StoreError,
    StoreUnavailableError,
    TaskError,
    TaskTimeoutError,
)
from cashet.models import (
    AsyncResultRef,
    Commit,
    ObjectRef,
    ResultRef,
    TaskDef,
    TaskRef,
    TaskStatus,
)
from cashet.protocols import AsyncExecutor, AsyncStore, Executor, Serializer, Store
from cashet.serializers import JsonSerializer, PickleSerializer, SafePickleSerializer

__all__ = [
    "AmbiguousHashError",
    "ArchiveError",
    "AsyncExecutor",
    "AsyncResultRef",
    "AsyncStore",
    "BlobCorruptedError",
    "BlobError",
    "BlobMissingError",
    "CashetError",
    "Client",
    "ClosureWarning",
    "Commit",
    "CommitNotFoundError",
    "DamagedStoreWarning",
    "Executor",
    "JsonSerializer",
    "ObjectRef",
    "PickleSerializer",
    "ReadOnlyStoreError",
    "ReadOnlyStoreWarning",
    "ResultRef",
    "SafePickleSerializer",
    "Serializer",
    "Store",
    "ResultSerializationError",
    "StoreError",
    "StoreUnavailableError",
    "TaskDef",
    "TaskError",
    "TaskFunction",
    "TaskRef",
    "TaskStatus",
    "TaskTimeoutError",
    "__version__",
]
